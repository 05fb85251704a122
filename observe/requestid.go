package observe

import (
	"context"
	"log/slog"

	"github.com/google/uuid"
)

// RequestIDHeader carries a request's id, taken from the caller (a proxy
// or client that assigned one) or made by the gateway, and always sent
// back.
const RequestIDHeader = "X-Request-Id"

type ctxKey struct{}

// WithRequestID returns ctx carrying the request id.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// RequestID returns the request id ctx carries, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(ctxKey{}).(string)
	return id
}

// AcceptRequestID returns the id a caller sent when it is safe to echo and
// log (1 to 128 characters of letters, digits and "-_.:/@"), else a new one.
func AcceptRequestID(sent string) string {
	if len(sent) > 0 && len(sent) <= 128 {
		ok := true
		for i := 0; i < len(sent) && ok; i++ {
			c := sent[i]
			ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':' || c == '/' || c == '@'
		}
		if ok {
			return sent
		}
	}
	return uuid.NewString()
}

// LogHandler adds the request id (and the trace id when the request is
// traced) of the context to every record logged with one, so that every
// line a request causes, in any package, can be found by its id.
func LogHandler(h slog.Handler) slog.Handler {
	if _, ok := h.(ctxHandler); ok {
		return h
	}
	return ctxHandler{h}
}

type ctxHandler struct{ slog.Handler }

func (h ctxHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	if sc := spanContext(ctx); sc != "" {
		r.AddAttrs(slog.String("trace_id", sc))
	}
	return h.Handler.Handle(ctx, r)
}

func (h ctxHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return ctxHandler{h.Handler.WithAttrs(as)}
}
func (h ctxHandler) WithGroup(name string) slog.Handler { return ctxHandler{h.Handler.WithGroup(name)} }
