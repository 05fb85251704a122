package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/fhirgate/fhirgate/adapters"
	"github.com/fhirgate/fhirgate/config"
	"github.com/fhirgate/fhirgate/connect"
	"github.com/fhirgate/fhirgate/internal/seal"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/fhirgate/fhirgate/web"
)

// newConnect prepares the connections of the sources that patients
// connect themselves (auth type smart-patient); nil when there are none.
// The state key comes from FHIRGATE_STATE_KEY: without it connecting is
// disabled (said at start and to the app), since tokens are never stored
// in the clear.
func newConnect(cfg *config.Config, store storage.Store, srcs []adapters.Source, log *slog.Logger) (*connect.Service, error) {
	titles := map[string]string{}
	for _, s := range cfg.Sources {
		titles[s.ID] = s.Title
	}
	cs := connect.SourcesOf(srcs, titles)
	if len(cs) == 0 {
		return nil, nil
	}
	conns, ok := store.(storage.Connections)
	if !ok {
		return nil, errors.New("sources of auth type smart-patient need the SQLite or PostgreSQL store")
	}
	base := strings.TrimSuffix(cfg.Server.BaseURL, "/")
	if base == "" {
		return nil, fmt.Errorf("server.baseURL is required when a source has auth type smart-patient (%s): the sources send the patient's browser back to <baseURL>%s, which must be registered there as the redirect URI", cs[0].ID, connect.CallbackPath)
	}
	sl, _, err := seal.FromEnv(os.LookupEnv)
	if err != nil {
		return nil, err
	}
	if sl == nil {
		log.Warn("connecting sources is disabled: set " + seal.KeyEnv + " (32 random bytes, base64; the same on every replica) so that patients' tokens can be stored sealed")
	}
	returns := append([]string{}, cfg.Server.Apps.ConnectReturnURLs...)
	if !cfg.Server.Apps.Disabled {
		returns = append(returns, base+web.Prefix+"patient/")
	}
	svc := connect.New(connect.Config{Sources: cs, Store: conns, Sealer: sl, BaseURL: base, ReturnURLs: returns, Logger: log})
	log.Info("patients connect their own logins at sources", "sources", len(cs), "redirect_uri", svc.CallbackURL())
	return svc, nil
}
