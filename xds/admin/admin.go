// Package admin is the control plane's HTTP/JSON admin API: create, read, update and
// delete every config resource, the virtual-key lifecycle (rotate, disable, enable,
// revoke) and scoped API tokens. The sluice CLI is a client of it.
//
// Every request carries "Authorization: Bearer <token>": the admin token (every
// permission) or an API token minted through POST /v1/api-tokens, which holds a list of
// permissions "<resource>:<verb>". Responses never contain a secret: virtual-key secrets
// and API-token secrets appear once, in the answer that minted them; provider credentials
// are write-only. Errors are {"error":{"code","message"}}; a 500 names a request id and
// the cause is logged, never rendered.
package admin

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/counters"
	"github.com/sluice-gateway/sluice/internal/secretbox"
	"github.com/sluice-gateway/sluice/internal/vkey"
	"github.com/sluice-gateway/sluice/xds/store"
)

// DefaultRotationGrace is how long a rotated-out virtual-key secret keeps working.
const DefaultRotationGrace = 24 * time.Hour

// DefaultScope is the scope given to a model provider, routing policy or virtual key
// created without one: the single organization of an all-in-one install.
var DefaultScope = config.Scope{Kind: config.ScopeOrg, ID: "default"}

// maxBody bounds a request body.
const maxBody = 1 << 20

// Config configures a Server.
type Config struct {
	Store   store.Store
	Keyring *secretbox.Keyring // seals provider credentials
	Hasher  *vkey.Hasher       // hashes virtual-key and API-token secrets
	// AdminToken grants every permission. It is compared in constant time and never
	// logged. At least 32 characters.
	AdminToken string
	Logger     *slog.Logger     // default: discard
	Now        func() time.Time // default: time.Now
	// RotationGrace is the default time a rotated-out secret keeps working (24h).
	RotationGrace time.Duration
	// Counters is the gateway's counter store, read by GET /v1/budgets/{id}/usage; nil
	// answers that endpoint with 501.
	Counters counters.Store
}

// Server is the admin API, an http.Handler.
type Server struct {
	store    store.Store
	keyring  *secretbox.Keyring
	hasher   *vkey.Hasher
	adminSum [sha256.Size]byte
	logger   *slog.Logger
	now      func() time.Time
	grace    time.Duration
	counters counters.Store
	mux      *http.ServeMux
}

// New returns the admin API for cfg.
func New(cfg Config) (*Server, error) {
	var errs []error
	if cfg.Store == nil {
		errs = append(errs, errors.New("admin: Store is required"))
	}
	if cfg.Keyring == nil {
		errs = append(errs, errors.New("admin: Keyring is required"))
	}
	if cfg.Hasher == nil {
		errs = append(errs, errors.New("admin: Hasher is required"))
	}
	if len(cfg.AdminToken) < 32 {
		errs = append(errs, errors.New("admin: the admin token must be at least 32 characters"))
	}
	if cfg.RotationGrace < 0 {
		errs = append(errs, errors.New("admin: RotationGrace is negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s := &Server{store: cfg.Store, keyring: cfg.Keyring, hasher: cfg.Hasher,
		adminSum: sha256.Sum256([]byte(cfg.AdminToken)), logger: cfg.Logger, now: cfg.Now,
		grace: cfg.RotationGrace, counters: cfg.Counters, mux: http.NewServeMux()}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.grace == 0 {
		s.grace = DefaultRotationGrace
	}
	s.routes()
	return s, nil
}

func (s *Server) routes() {
	for _, sp := range specs {
		base := "/v1/" + sp.path
		s.handle("POST "+base, sp.perm, verbCreate, func(w http.ResponseWriter, r *http.Request) error { return s.create(w, r, sp) })
		s.handle("GET "+base, sp.perm, verbRead, func(w http.ResponseWriter, r *http.Request) error { return s.list(w, r, sp) })
		s.handle("GET "+base+"/{id}", sp.perm, verbRead, func(w http.ResponseWriter, r *http.Request) error { return s.get(w, r, sp) })
		s.handle("PATCH "+base+"/{id}", sp.perm, verbUpdate, func(w http.ResponseWriter, r *http.Request) error { return s.update(w, r, sp) })
		s.handle("DELETE "+base+"/{id}", sp.perm, verbDelete, func(w http.ResponseWriter, r *http.Request) error { return s.delete(w, r, sp) })
	}
	for _, a := range keyActions {
		s.handle("POST /v1/virtual-keys/{id}/"+a.name, permVirtualKeys, verbUpdate,
			func(w http.ResponseWriter, r *http.Request) error { return s.keyAction(w, r, a) })
	}
	s.handle("GET /v1/budgets/{id}/usage", permBudgets, verbRead, s.budgetUsage)
	s.handle("POST /v1/model-providers/rewrap", permModelProviders, verbUpdate, s.rewrapProviders)
	s.handle("POST /v1/api-tokens", permAPITokens, verbCreate, s.createToken)
	s.handle("GET /v1/api-tokens", permAPITokens, verbRead, s.listTokens)
	s.handle("GET /v1/api-tokens/{id}", permAPITokens, verbRead, s.getToken)
	s.handle("DELETE /v1/api-tokens/{id}", permAPITokens, verbDelete, s.deleteToken)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, &Error{Status: http.StatusNotFound, Code: "not_found", Message: "Unknown endpoint."})
	})
}

// ServeHTTP implements [http.Handler].
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	info := &reqInfo{id: newRequestID()}
	w.Header().Set("X-Sluice-Request-Id", info.id)
	r = r.WithContext(context.WithValue(r.Context(), reqInfoKey{}, info))
	sw := &statusWriter{ResponseWriter: w}
	start := time.Now()
	s.mux.ServeHTTP(sw, r)
	// The path holds ids only; query strings and headers (which may hold a token) are not logged.
	s.logger.Info("admin: request", "request_id", info.id, "method", r.Method, "path", r.URL.Path,
		"status", sw.status, "caller", info.caller.String(), "duration", time.Since(start))
}

// handle registers fn behind authentication and the permission perm:verb.
func (s *Server) handle(pattern, perm string, verb string, fn func(http.ResponseWriter, *http.Request) error) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		c, err := s.authenticate(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		info(r.Context()).caller = c
		if !c.allows(perm + ":" + verb) {
			s.writeError(w, r, &Error{Status: http.StatusForbidden, Code: "permission_denied",
				Message: fmt.Sprintf("This token lacks the %s:%s permission.", perm, verb)})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		if err := fn(w, r); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// caller is an authenticated principal of the admin API.
type caller struct {
	admin   bool
	tokenID string
	perms   map[string]bool
	expires *time.Time // the token's expiry; a token it mints may not outlive it
}

func (c *caller) allows(perm string) bool { return c.admin || c.perms[perm] }

func (c *caller) String() string {
	if c == nil {
		return ""
	}
	if c.admin {
		return "admin"
	}
	return c.tokenID
}

// reqInfo is the per-request state ServeHTTP keeps in the context: the request id, and
// the caller once authenticated.
type reqInfo struct {
	id     string
	caller *caller
}

type reqInfoKey struct{}

func info(ctx context.Context) *reqInfo {
	if i, ok := ctx.Value(reqInfoKey{}).(*reqInfo); ok {
		return i
	}
	return &reqInfo{}
}

// callerFrom returns the authenticated caller; handlers run only after authentication.
func callerFrom(ctx context.Context) *caller {
	if c := info(ctx).caller; c != nil {
		return c
	}
	return &caller{}
}

var errUnauthenticated = &Error{Status: http.StatusUnauthorized, Code: "unauthenticated",
	Message: "Missing or invalid admin API token."}

// authenticate resolves the bearer token to a caller. The token is never logged or
// echoed: every failure is the same 401.
func (s *Server) authenticate(r *http.Request) (*caller, error) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return nil, errUnauthenticated
	}
	tok = strings.TrimSpace(tok)
	sum := sha256.Sum256([]byte(tok))
	if subtle.ConstantTimeCompare(sum[:], s.adminSum[:]) == 1 {
		return &caller{admin: true}, nil
	}
	if !strings.HasPrefix(tok, tokenPrefix) {
		return nil, errUnauthenticated
	}
	t, _, err := s.tokenByHash(r.Context(), s.hasher.Sum(tok).Hex())
	if errors.Is(err, store.ErrNotFound) {
		return nil, errUnauthenticated
	}
	if err != nil {
		return nil, err
	}
	if t.ExpiresAt != nil && !s.now().Before(*t.ExpiresAt) {
		return nil, errUnauthenticated
	}
	c := &caller{tokenID: t.ID, perms: make(map[string]bool, len(t.Permissions)), expires: t.ExpiresAt}
	for _, p := range t.Permissions {
		c.perms[p] = true
	}
	return c, nil
}

// Error is an error the admin API renders to its client. Its Message must never hold a
// secret; Details lists every validation problem.
type Error struct {
	Status  int
	Code    string
	Message string
	Details []string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func badRequest(code, msg string, details ...string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: code, Message: msg, Details: details}
}

func invalid(problems []string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "invalid_request",
		Message: strings.Join(problems, "; "), Details: problems}
}

func notFound(what, id string) *Error {
	return &Error{Status: http.StatusNotFound, Code: "not_found", Message: fmt.Sprintf("No %s %q.", what, id)}
}

func conflict(msg string) *Error {
	return &Error{Status: http.StatusConflict, Code: "conflict", Message: msg}
}

// storeError maps a store error on (what, id) to an *Error, or returns it unchanged.
func storeError(err error, what, id string) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return notFound(what, id)
	case errors.Is(err, store.ErrExists):
		return &Error{Status: http.StatusConflict, Code: "already_exists", Message: fmt.Sprintf("A %s %q already exists.", what, id)}
	case errors.Is(err, store.ErrConflict):
		return conflict(fmt.Sprintf("The %s %q changed concurrently; read it again and retry.", what, id))
	}
	return err
}

type errorBody struct {
	Error struct {
		Code      string   `json:"code"`
		Message   string   `json:"message"`
		Details   []string `json:"details,omitempty"`
		RequestID string   `json:"request_id,omitempty"`
	} `json:"error"`
}

// writeError renders err. Anything but an *Error is a 500 naming the request id; its
// cause is logged.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	reqID := info(r.Context()).id
	var e *Error
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &e):
	case errors.As(err, &mbe):
		e = &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Message: "The request body is too large."}
	default:
		s.logger.Error("admin: internal error", "request_id", reqID, "method", r.Method, "path", r.URL.Path, "err", err)
		e = &Error{Status: http.StatusInternalServerError, Code: "internal_error",
			Message: "Internal error. Request id: " + reqID + "."}
	}
	var b errorBody
	b.Error.Code, b.Error.Message, b.Error.Details = e.Code, e.Message, e.Details
	if e.Status >= 500 {
		b.Error.RequestID = reqID
	}
	writeJSON(w, e.Status, &b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil { // only plain data is rendered
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"internal_error","message":"Internal error."}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// readObject reads the body as one JSON object. An empty body is an empty object.
func readObject(r *http.Request) (map[string]json.RawMessage, error) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	obj := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(b)) == 0 {
		return obj, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return nil, badRequest("invalid_json", "The request body must be a JSON object.")
	}
	if dec.More() {
		return nil, badRequest("invalid_json", "The request body must hold one JSON object.")
	}
	return obj, nil
}

// ifMatch returns the revision an If-Match header demands, or 0 without one.
func ifMatch(r *http.Request) (int64, error) {
	h := strings.Trim(strings.TrimSpace(r.Header.Get("If-Match")), `"`)
	if h == "" {
		return 0, nil
	}
	rev, err := strconv.ParseInt(h, 10, 64)
	if err != nil || rev <= 0 {
		return 0, badRequest("invalid_if_match", "If-Match must be a revision number, as in the ETag header.")
	}
	return rev, nil
}

func setETag(w http.ResponseWriter, rev int64) {
	w.Header().Set("ETag", `"`+strconv.FormatInt(rev, 10)+`"`)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// flatten splits a (joined) validation error into its messages.
func flatten(err error) []string {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []string{err.Error()}
}
