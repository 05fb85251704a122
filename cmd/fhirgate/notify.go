package main

import (
	"context"
	"log/slog"

	"github.com/fhirgate/fhirgate/notify"
	"github.com/fhirgate/fhirgate/observe"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/riverqueue/river/rivertype"
)

// startNotify starts Subscription notifications on the store: its write
// hooks record events from now on. Plain http:// endpoints are admitted
// only without authentication (--auth=none, loopback use). Without a
// configured base URL, notifications refer to resources under
// http://<addr>.
func startNotify(ctx context.Context, store storage.Store, baseURL, addr string, allowHTTP bool, log *slog.Logger, m *observe.Metrics) (*notify.Service, error) {
	if baseURL == "" {
		baseURL = "http://" + addr
	}
	svc, err := notify.New(ctx, notify.Config{Store: store, BaseURL: baseURL, AllowHTTP: allowHTTP, Logger: log,
		Middleware: []rivertype.Middleware{m.RiverMiddleware()}, Delivered: m.Notification})
	if err != nil {
		return nil, err
	}
	svc.Install()
	if err := svc.Start(ctx); err != nil {
		return nil, err
	}
	return svc, nil
}
