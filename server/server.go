// Package server is the gateway's FHIR REST interface: Gin routes and
// middleware, one file per interaction. It knows HTTP and nothing about
// SQL; everything it stores goes through storage.Store.
package server

import (
	"cmp"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/consolidate"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/internal/lru"
	"github.com/fhirgate/fhirgate/observe"
	"github.com/fhirgate/fhirgate/referral"
	"github.com/fhirgate/fhirgate/release"
	"github.com/fhirgate/fhirgate/shlink"
	"github.com/fhirgate/fhirgate/storage"
	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
)

// DefaultMaxBodyBytes is the request body limit when Config leaves it unset.
const DefaultMaxBodyBytes = 32 << 20

// DefaultMaxUploadBytes is the limit on one uploaded file (PDF, image,
// DICOM) when Config leaves it unset. Files stream into the store, so it
// is larger than the body limit.
const DefaultMaxUploadBytes = 256 << 20

// Config configures a Server.
type Config struct {
	// Store holds the resources. Required.
	Store storage.Store
	// Logger receives the access log and errors; never bodies or tokens.
	Logger *slog.Logger
	// BaseURL is the public FHIR base (e.g. https://gw.example.org/fhir).
	// When empty it is derived from each request's Host.
	BaseURL string
	// MaxBodyBytes bounds request bodies (413 beyond); DefaultMaxBodyBytes when 0.
	MaxBodyBytes int64
	// Consolidator files imported records; one of its own when nil. The
	// gateway shares one among every path that files records (imports,
	// pulls, HL7 v2 feeds, ABDM), so that a patient's batches from all of
	// them are serialised and see each other.
	Consolidator *consolidate.Consolidator
	// MaxUploadBytes bounds one uploaded file ($import of a PDF, image or
	// DICOM object; 413 beyond); DefaultMaxUploadBytes when 0.
	MaxUploadBytes int64
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// NewID assigns ids to created resources; time-ordered UUIDs when nil.
	NewID func() string
	// Search is the search-parameter registry; the store must index with
	// the same one. Required.
	Search *search.Registry
	// Auth authenticates every non-public request; nil serves without
	// authentication (--auth=none, loopback only).
	Auth Authenticator
	// Auditor is the audit trail: it records every access, refusal and
	// write, and serves as the read-only AuditEvents; nil: none.
	Auditor *audit.Trail
	// JWKS is the JSON Web Key Set of the gateway's own signing keys (the
	// keys it authenticates to sources with), served at
	// /.well-known/jwks.json; an empty set when nil.
	JWKS []byte
	// Validator checks every written resource (422 on errors); nil: none.
	Validator Validator
	// Software names the server in the CapabilityStatement.
	Software, Version string
	// Pull runs Patient/$pull (*jobs.Service); nil: no $pull.
	Pull PullService
	// CanonicalBase is the canonical base of the gateway's own conformance
	// resources (its OperationDefinitions); DefaultCanonicalBase when "".
	CanonicalBase string
	// MaxElements and MaxDepth bound the JSON values and nesting of one
	// request body (413 beyond); DefaultMaxElements and DefaultMaxDepth
	// when 0.
	MaxElements, MaxDepth int
	// BodyMemoryBytes bounds the bytes of request bodies held at once: a
	// request whose body does not fit waits up to BodyWait for others to
	// finish, then answers 503. DefaultBodyMemoryBytes and
	// DefaultBodyWait when 0.
	BodyMemoryBytes int64
	BodyWait        time.Duration
	// IdleIOTimeout ends a request whose client stops sending its body or
	// taking its response for this long; MinBodyRate (bytes per second) is
	// the slowest average a body may arrive at. DefaultIdleIOTimeout and
	// DefaultMinBodyRate when 0.
	IdleIOTimeout time.Duration
	MinBodyRate   int
	// Payers are the insurers asked whether a second opinion is covered
	// (sources of type payer, adapters/payer); none: not asked.
	Payers []referral.Payer
	// Narrator drafts machine-written narratives of case summaries for
	// Patient/$summary?narrative=draft; nil: not offered.
	Narrator Narrator
	// Metrics records requests; nil: none.
	Metrics *observe.Metrics
	// CORSOrigins are the browser origins allowed to call the API
	// ("https://app.example.org"; "*" for any). Empty: no CORS headers.
	CORSOrigins []string
}

// levelAccess is the level of the access log.
const levelAccess = slog.LevelInfo

// Interaction codes used in routes and the CapabilityStatement.
const (
	InteractionRead            = "read"
	InteractionVRead           = "vread"
	InteractionUpdate          = "update"
	InteractionPatch           = "patch"
	InteractionDelete          = "delete"
	InteractionHistoryInstance = "history-instance"
	InteractionHistoryType     = "history-type"
	InteractionCreate          = "create"
	InteractionSearchType      = "search-type"
	InteractionHistorySystem   = "history-system"
	InteractionTransaction     = "transaction"
	// conditional forms, claimed through conditionalUpdate/conditionalDelete
	InteractionConditionalUpdate = "conditional-update"
	InteractionConditionalDelete = "conditional-delete"
	InteractionCapabilities      = "capabilities"
	InteractionOperation         = "operation"
	InteractionHealth            = "health"
)

// Route is one registered endpoint. The route table is the single source of
// what the server answers: the CapabilityStatement and the authorisation
// tests are generated from it.
type Route struct {
	Method  string
	Path    string // Gin pattern
	Name    string // interaction code
	Public  bool   // answered without authentication (metadata, health)
	handler gin.HandlerFunc
}

// Server is the FHIR REST server.
type Server struct {
	cfg    Config
	log    *slog.Logger
	engine *gin.Engine
	routes []Route
	now    func() time.Time
	newID  func() string

	started      time.Time
	contributors []CapabilityContributor
	operations   []Operation
	publicPaths  map[string]bool
	decider      *release.Decider
	pages        *lru.Cache[*pageEntry] // $everything pages answered without a release rule
	referral     *referral.Service
	conformance  map[string]*fhir.Resource // "Type/id" -> the published StructureDefinitions and CodeSystems
	// the CapabilityStatement's JSON by base URL, for a few bases only:
	// without a configured base URL the base comes from the request's Host
	// header, which any caller sets (each entry is about 400 KB)
	capsMu    sync.Mutex
	capsCache map[string][]byte
	subs      SubscriptionService
	shl       *shlink.Service
	connect   ConnectService
	budget    *bodyBudget
	draining  atomic.Bool
	ready     Readiness // the store's readiness check; nil: Ping
}

// New builds a Server.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	// every line a request causes carries its id
	cfg.Logger = slog.New(observe.LogHandler(cfg.Logger.Handler()))
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxUploadBytes <= 0 {
		cfg.MaxUploadBytes = DefaultMaxUploadBytes
	}
	if cfg.Search == nil {
		panic("server: Config.Search is required")
	}
	cfg.MaxElements = cmp.Or(cfg.MaxElements, DefaultMaxElements)
	cfg.MaxDepth = cmp.Or(cfg.MaxDepth, DefaultMaxDepth)
	cfg.BodyMemoryBytes = cmp.Or(cfg.BodyMemoryBytes, max(DefaultBodyMemoryBytes, cfg.MaxBodyBytes))
	cfg.BodyWait = cmp.Or(cfg.BodyWait, DefaultBodyWait)
	cfg.IdleIOTimeout = cmp.Or(cfg.IdleIOTimeout, DefaultIdleIOTimeout)
	cfg.MinBodyRate = cmp.Or(cfg.MinBodyRate, DefaultMinBodyRate)
	if cfg.Software == "" {
		cfg.Software = "fhirgate"
	}
	s := &Server{cfg: cfg, log: cfg.Logger, now: cfg.Now, newID: cfg.NewID, budget: newBodyBudget(cfg.BodyMemoryBytes, cfg.BodyWait), pages: newPageCache()}
	if s.now == nil {
		s.now = time.Now
	}
	// Every write in a request's context is checked by its guard inside
	// the write's own transaction (access.Checked); every read goes through
	// the guard (Server.guard).
	if s.newID == nil {
		s.newID = func() string { return uuid.Must(uuid.NewV7()).String() }
	}
	s.ready, _ = cfg.Store.(Readiness) // asked before the store is wrapped
	checked := release.Checked(cfg.Store)
	s.decider = release.New(release.Options{Store: release.Unchecked(cfg.Store), Search: cfg.Search, BaseURL: cfg.BaseURL, Now: s.now})
	// the second-opinion workflow: its rules apply to every write a
	// request makes (referral.Service.Store), before the release rule
	// decides the transaction
	s.referral = referral.New(referral.Config{Store: checked, Decider: s.decider, Search: cfg.Search, Validator: cfg.Validator, Now: s.now, NewID: s.newID, Logger: cfg.Logger, CanonicalBase: s.canonicalBase(), Payers: cfg.Payers})
	s.cfg.Store = s.referral.Store(checked)
	s.started = s.now()
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.HandleMethodNotAllowed = true
	e.RemoveExtraSlash = false
	e.RedirectTrailingSlash = false
	e.RedirectFixedPath = false
	e.UseRawPath = true
	e.UnescapePathValues = true
	e.ContextWithFallback = true
	e.Use(s.observeRequests(), s.recoverer(), hsts, s.cors(), s.ioDeadlines(), s.accessLog(), s.releaseBody(), s.negotiate(), s.auditMiddleware(), s.authenticate(), s.auditEventRoutes())
	e.NoRoute(func(c *gin.Context) {
		s.fail(c, fhir.Errorf(http.StatusNotFound, "not-supported", nil, "no FHIR interaction at %s %s", c.Request.Method, c.Request.URL.Path))
	})
	e.NoMethod(func(c *gin.Context) {
		s.fail(c, fhir.Errorf(http.StatusMethodNotAllowed, "not-supported", nil, "method %s is not allowed at this path", c.Request.Method))
	})
	s.engine = e
	s.registerRoutes()
	if cfg.Validator != nil {
		s.registerValidate()
	}
	s.registerEverything()
	s.registerSecondOpinion()
	s.registerOpinions()
	s.registerImport()
	s.registerBinary()
	s.registerAccessLog()
	if cfg.Pull != nil {
		s.registerPull()
	}
	s.AddCapabilities(s.searchCapabilities)
	s.AddCapabilities(s.operationCapabilities)
	return s
}

func (s *Server) registerRoutes() {
	s.publicPaths = map[string]bool{}
	add := func(r Route) {
		s.routes = append(s.routes, r)
		s.engine.Handle(r.Method, r.Path, r.handler)
		if r.Public {
			s.publicPaths[r.Path] = true
		}
	}
	if sc, ok := s.cfg.Auth.(SMARTConfigurer); ok && s.cfg.Auth != nil {
		add(Route{Method: http.MethodGet, Path: "/.well-known/smart-configuration", Name: InteractionHealth, Public: true, handler: s.smartConfiguration(sc)})
	}
	add(Route{Method: http.MethodGet, Path: "/healthz", Name: InteractionHealth, Public: true, handler: s.healthz})
	add(Route{Method: http.MethodGet, Path: "/readyz", Name: InteractionHealth, Public: true, handler: s.readyz})
	add(Route{Method: http.MethodGet, Path: "/metadata", Name: InteractionCapabilities, Public: true, handler: s.capabilities})
	add(Route{Method: http.MethodGet, Path: "/.well-known/jwks.json", Name: InteractionHealth, Public: true, handler: s.jwks})
	add(Route{Method: http.MethodGet, Path: "/_history", Name: InteractionHistorySystem, handler: s.historySystem})
	add(Route{Method: http.MethodPost, Path: "/", Name: InteractionTransaction, handler: s.transaction})
	add(Route{Method: http.MethodPost, Path: "/:type", Name: InteractionCreate, handler: s.createOrOperation})
	add(Route{Method: http.MethodGet, Path: "/:type", Name: InteractionSearchType, handler: s.searchOrOperation})
	s.routes = append(s.routes, Route{Method: http.MethodPost, Path: "/:type/_search", Name: InteractionSearchType})
	add(Route{Method: http.MethodPut, Path: "/:type", Name: InteractionConditionalUpdate, handler: s.conditionalUpdate})
	add(Route{Method: http.MethodDelete, Path: "/:type", Name: InteractionConditionalDelete, handler: s.conditionalDelete})
	add(Route{Method: http.MethodGet, Path: "/:type/_history", Name: InteractionHistoryType, handler: s.historyType})
	add(Route{Method: http.MethodGet, Path: "/:type/:id", Name: InteractionRead, handler: s.read})
	add(Route{Method: http.MethodHead, Path: "/:type/:id", Name: InteractionRead, handler: s.read})
	add(Route{Method: http.MethodPut, Path: "/:type/:id", Name: InteractionUpdate, handler: s.update})
	add(Route{Method: http.MethodPatch, Path: "/:type/:id", Name: InteractionPatch, handler: s.patch})
	add(Route{Method: http.MethodDelete, Path: "/:type/:id", Name: InteractionDelete, handler: s.delete})
	add(Route{Method: http.MethodGet, Path: "/:type/:id/_history", Name: InteractionHistoryInstance, handler: s.historyInstance})
	add(Route{Method: http.MethodGet, Path: "/:type/:id/_history/:vid", Name: InteractionVRead, handler: s.vread})
	// operations and compartments are dispatched inside these handlers;
	// RegisterOperation lists each operation in the route table
	s.engine.POST("/:type/:id", s.postTypeOrOperation)
	s.engine.GET("/:type/:id/:op", s.instanceOperation)
	s.engine.POST("/:type/:id/:op", s.instanceOperation)
}

// Routes returns the route table.
func (s *Server) Routes() []Route { return append([]Route(nil), s.routes...) }

// EngineRoutes lists every method and path pattern the HTTP engine
// answers, including the dispatch routes behind which operations and
// compartment searches live (the authorisation tests walk this list).
func (s *Server) EngineRoutes() [][2]string {
	var out [][2]string
	for _, r := range s.engine.Routes() {
		out = append(out, [2]string{r.Method, r.Path})
	}
	return out
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.engine.ServeHTTP(w, r) }

func (s *Server) healthz(c *gin.Context) {
	c.Header("Content-Type", "application/json")
	c.String(http.StatusOK, `{"status":"ok"}`)
}

// baseURL is the FHIR base for links and fullUrls.
func (s *Server) baseURL(r *http.Request) string {
	if s.cfg.BaseURL != "" {
		return strings.TrimRight(s.cfg.BaseURL, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// jwks serves the gateway's public keys, for the sources that registered
// its JWKS URL for SMART Backend Services.
func (s *Server) jwks(c *gin.Context) {
	body := s.cfg.JWKS
	if len(body) == 0 {
		body = []byte(`{"keys":[]}`)
	}
	c.Header("Content-Type", "application/json")
	c.Header("Cache-Control", "public, max-age=300")
	c.Status(http.StatusOK)
	_, _ = c.Writer.Write(body)
}
