package abdm

// The JSON shapes of the ABDM messages this HIU sends and receives
// (STANDARDS.md §9.3–9.5). v0.5 carries requestId and timestamp in the
// body and refers to the request answered as resp.requestId; v3 moves them
// to the REQUEST-ID and TIMESTAMP headers and uses response.requestId.

// Envelope holds the members every message may carry.
type Envelope struct {
	RequestID string   `json:"requestId,omitempty"`
	Timestamp string   `json:"timestamp,omitempty"`
	Resp      *RespRef `json:"resp,omitempty"`
	Response  *RespRef `json:"response,omitempty"`
	Error     *Error   `json:"error,omitempty"`
}

// RespRef names the request a callback answers.
type RespRef struct {
	RequestID string `json:"requestId"`
}

// Error is an ABDM error object.
type Error struct {
	Code    any    `json:"code"`
	Message string `json:"message"`
}

func (e Envelope) answers() string {
	switch {
	case e.Resp != nil:
		return e.Resp.RequestID
	case e.Response != nil:
		return e.Response.RequestID
	}
	return ""
}

// ID is {"id": …}.
type ID struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	Type string `json:"type,omitempty"`
}

// Purpose is a consent purpose.
type Purpose struct {
	Text   string `json:"text"`
	Code   string `json:"code"`
	RefURI string `json:"refUri,omitempty"`
}

// RequesterJSON is consent.requester.
type RequesterJSON struct {
	Name       string               `json:"name"`
	Identifier *RequesterIdentifier `json:"identifier,omitempty"`
}

// RequesterIdentifier is consent.requester.identifier.
type RequesterIdentifier struct {
	Type   string `json:"type"`
	Value  string `json:"value"`
	System string `json:"system"`
}

// DateRange is {from, to}.
type DateRange struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// Frequency is permission.frequency.
type Frequency struct {
	Unit    string `json:"unit"`
	Value   int    `json:"value"`
	Repeats int    `json:"repeats"`
}

// Permission is consent.permission.
type Permission struct {
	AccessMode  string     `json:"accessMode"`
	DateRange   DateRange  `json:"dateRange"`
	DataEraseAt string     `json:"dataEraseAt"`
	Frequency   *Frequency `json:"frequency,omitempty"`
}

// CareContext is one care context of a patient at a HIP.
type CareContext struct {
	PatientReference     string `json:"patientReference"`
	CareContextReference string `json:"careContextReference"`
}

// ConsentRequest is the consent object of consent-requests/init.
type ConsentRequest struct {
	Purpose      Purpose       `json:"purpose"`
	Patient      ID            `json:"patient"`
	HIP          *ID           `json:"hip,omitempty"`
	CareContexts []CareContext `json:"careContexts,omitempty"`
	HIU          ID            `json:"hiu"`
	Requester    RequesterJSON `json:"requester"`
	HITypes      []string      `json:"hiTypes"`
	Permission   Permission    `json:"permission"`
}

// ConsentInit is the body of consent-requests/init.
type ConsentInit struct {
	Envelope
	Consent ConsentRequest `json:"consent"`
}

// OnInit is the body of consent-requests/on-init.
type OnInit struct {
	Envelope
	ConsentRequest *ID `json:"consentRequest,omitempty"`
}

// Notify is the body of consents/hiu/notify.
type Notify struct {
	Envelope
	Notification struct {
		ConsentRequestID string `json:"consentRequestId"`
		Status           string `json:"status"`
		ConsentArtefacts []ID   `json:"consentArtefacts"`
	} `json:"notification"`
}

// Ack is one acknowledgement of consents/hiu/on-notify.
type Ack struct {
	Status    string `json:"status"`
	ConsentID string `json:"consentId"`
}

// OnNotify is the body of consents/hiu/on-notify.
type OnNotify struct {
	Envelope
	Acknowledgement []Ack `json:"acknowledgement"`
}

// Fetch is the body of consents/fetch.
type Fetch struct {
	Envelope
	ConsentID string `json:"consentId"`
}

// ConsentDetail is the consent artefact's content.
type ConsentDetail struct {
	SchemaVersion  string        `json:"schemaVersion,omitempty"`
	ConsentID      string        `json:"consentId"`
	CreatedAt      string        `json:"createdAt"`
	Patient        ID            `json:"patient"`
	CareContexts   []CareContext `json:"careContexts"`
	Purpose        Purpose       `json:"purpose"`
	HIP            ID            `json:"hip"`
	HIU            ID            `json:"hiu"`
	ConsentManager ID            `json:"consentManager"`
	Requester      RequesterJSON `json:"requester"`
	HITypes        []string      `json:"hiTypes"`
	Permission     Permission    `json:"permission"`
}

// OnFetch is the body of consents/on-fetch.
type OnFetch struct {
	Envelope
	Consent *struct {
		Status        string        `json:"status"`
		ConsentDetail ConsentDetail `json:"consentDetail"`
		Signature     string        `json:"signature"`
	} `json:"consent,omitempty"`
}

// DHPublicKey is keyMaterial.dhPublicKey.
type DHPublicKey struct {
	Expiry     string `json:"expiry"`
	Parameters string `json:"parameters"`
	KeyValue   string `json:"keyValue"`
}

// KeyMaterial is one party's ECDH key material.
type KeyMaterial struct {
	CryptoAlg   string      `json:"cryptoAlg"`
	Curve       string      `json:"curve"`
	DHPublicKey DHPublicKey `json:"dhPublicKey"`
	Nonce       string      `json:"nonce"`
}

// HIRequest is the body of health-information/cm/request.
type HIRequest struct {
	Envelope
	HIRequest struct {
		Consent     ID          `json:"consent"`
		DateRange   DateRange   `json:"dateRange"`
		DataPushURL string      `json:"dataPushUrl"`
		KeyMaterial KeyMaterial `json:"keyMaterial"`
	} `json:"hiRequest"`
}

// OnRequest is the body of health-information/hiu/on-request.
type OnRequest struct {
	Envelope
	HIRequest *struct {
		TransactionID string `json:"transactionId"`
		SessionStatus string `json:"sessionStatus"`
	} `json:"hiRequest,omitempty"`
}

// Entry is one encrypted document of a push.
type Entry struct {
	Content              string `json:"content,omitempty"`
	Link                 string `json:"link,omitempty"`
	Media                string `json:"media"`
	Checksum             string `json:"checksum"`
	CareContextReference string `json:"careContextReference"`
}

// DataNotification is the body of the data push.
type DataNotification struct {
	PageNumber    int         `json:"pageNumber"`
	PageCount     int         `json:"pageCount"`
	TransactionID string      `json:"transactionId"`
	Entries       []Entry     `json:"entries"`
	KeyMaterial   KeyMaterial `json:"keyMaterial"`
}

// StatusResponse is one care context's outcome in a transfer notification.
type StatusResponse struct {
	CareContextReference string `json:"careContextReference"`
	HIStatus             string `json:"hiStatus"`
	Description          string `json:"description"`
}

// HINotify is the body of health-information/notify.
type HINotify struct {
	Envelope
	Notification struct {
		ConsentID          string `json:"consentId"`
		TransactionID      string `json:"transactionId"`
		DoneAt             string `json:"doneAt"`
		Notifier           ID     `json:"notifier"`
		StatusNotification struct {
			SessionStatus   string           `json:"sessionStatus"`
			HIPID           string           `json:"hipId"`
			StatusResponses []StatusResponse `json:"statusResponses"`
		} `json:"statusNotification"`
	} `json:"notification"`
}
