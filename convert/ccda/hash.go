package ccda

import (
	"crypto/sha1" //nolint:gosec // Attachment.hash is defined as SHA-1 by FHIR R4.
	"encoding/base64"
)

func sha1Base64(b []byte) string {
	h := sha1.Sum(b)
	return base64.StdEncoding.EncodeToString(h[:])
}
