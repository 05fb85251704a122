package server

import (
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
)

// ABDMPrefix is where the ABDM gateway's callbacks are served (DESIGN.md
// "Stable outside contract").
const ABDMPrefix = "/abdm"

// InteractionABDMCallback names the ABDM callback routes in the route table.
const InteractionABDMCallback = "abdm-callback"

// ABDMHandler answers the ABDM gateway's callbacks and the HIPs' data pushes
// (*abdm.HIU). Its requests are authenticated by the gateway's signed JWT,
// which the handler verifies itself, not by the gateway's OIDC issuers.
type ABDMHandler interface {
	http.Handler
	// CallbackPaths lists the POST paths it answers, relative to /abdm
	// ("/v0.5/consents/hiu/notify").
	CallbackPaths() []string
}

// RegisterABDM mounts h's callback routes under /abdm as public routes (the
// server's bearer-token authentication is skipped; h verifies the gateway's
// signature). Call it once, before serving.
func (s *Server) RegisterABDM(h ABDMHandler) {
	handler := gin.WrapH(h)
	for _, p := range h.CallbackPaths() {
		path := ABDMPrefix + "/" + strings.TrimLeft(p, "/")
		r := Route{Method: http.MethodPost, Path: path, Name: InteractionABDMCallback, Public: true, handler: handler}
		s.routes = append(s.routes, r)
		s.engine.Handle(r.Method, r.Path, r.handler)
		s.publicPaths[r.Path] = true
	}
}
