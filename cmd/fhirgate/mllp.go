package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/fhirgate/fhirgate/consolidate"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/ingest"
	"github.com/fhirgate/fhirgate/mllp"
	"github.com/fhirgate/fhirgate/observe"
	"github.com/fhirgate/fhirgate/storage"
)

// startMLLP listens for HL7 v2 over MLLP on addr and files each message
// into the matching patient's record before acknowledging it. The returned
// stop lets messages being stored finish and be acknowledged; call it
// before the store closes.
func startMLLP(addr string, store storage.Store, cons *consolidate.Consolidator, registry *search.Registry, log *slog.Logger, m *observe.Metrics) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &mllp.Server{
		Handler: observedMLLP(m, &ingest.HL7Handler{Store: store, Search: registry, Logger: log, Consolidator: cons}),
		Logger:  log,
		Opened:  m.MLLPConnection,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, mllp.ErrServerClose) {
			log.Error("MLLP listener stopped", "err", err)
		}
	}()
	log.Info("MLLP listener started", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}
