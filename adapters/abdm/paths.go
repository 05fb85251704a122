package abdm

// paths are one API version's gateway paths (HIU → gateway) and callback
// paths (gateway → HIU, relative to the /abdm mount), STANDARDS.md §9.2.
type paths struct {
	sessions, consentInit, onNotify, consentFetch, hiRequest, hiNotify, certs string
	// callbacks
	onInit, notify, onFetch, onRequest, transfer string
}

var v05Paths = paths{
	sessions:     "/v0.5/sessions",
	consentInit:  "/v0.5/consent-requests/init",
	onNotify:     "/v0.5/consents/hiu/on-notify",
	consentFetch: "/v0.5/consents/fetch",
	hiRequest:    "/v0.5/health-information/cm/request",
	hiNotify:     "/v0.5/health-information/notify",
	certs:        "/v0.5/certs",
	onInit:       "/v0.5/consent-requests/on-init",
	notify:       "/v0.5/consents/hiu/notify",
	onFetch:      "/v0.5/consents/on-fetch",
	onRequest:    "/v0.5/health-information/hiu/on-request",
	transfer:     "/v0.5/health-information/transfer",
}

var v3Paths = paths{
	sessions:     "/api/hiecm/gateway/v3/sessions",
	consentInit:  "/api/hiecm/consent/v3/request/init",
	onNotify:     "/api/hiecm/consent/v3/request/hiu/on-notify",
	consentFetch: "/api/hiecm/consent/v3/fetch",
	hiRequest:    "/api/hiecm/data-flow/v3/health-information/request",
	hiNotify:     "/api/hiecm/data-flow/v3/health-information/notify",
	certs:        "/api/hiecm/gateway/v3/certs",
	onInit:       "/api/v3/hiu/consent/request/on-init",
	notify:       "/api/v3/hiu/consent/request/notify",
	onFetch:      "/api/v3/hiu/consent/on-fetch",
	onRequest:    "/api/v3/hiu/health-information/on-request",
	transfer:     "/api/v3/hiu/health-information/transfer",
}

func pathsFor(version string) paths {
	if version == V3 {
		return v3Paths
	}
	return v05Paths
}

// CallbackPaths lists the callback paths of an API version, relative to
// the /abdm mount ("/v0.5/consents/hiu/notify").
func CallbackPaths(version string) []string {
	p := pathsFor(version)
	return []string{p.onInit, p.notify, p.onFetch, p.onRequest, p.transfer}
}
