// Package ctxtoken carries extproc's admission decision to the dispatcher as a short-lived
// HS256 JWT in the x-sluice-ctx header. The dispatcher serves nothing without a valid one, so
// it is never usable except through extproc.
package ctxtoken

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluice-gateway/sluice/internal/counters"
)

// TTL is how long a token is valid. Envoy forwards the request to the dispatcher right after
// extproc answers, so a minute is ample even on a loaded host.
const TTL = time.Minute

// issuer is fixed so a token minted for another purpose with the same key is refused.
const issuer = "sluice-extproc"

// Attempt is one entry of the provider chain: which provider, and the model name to send it.
type Attempt struct {
	Provider string `json:"p"`
	Model    string `json:"m"`
}

// Claims is the decision extproc made for one request.
type Claims struct {
	RequestID   string    `json:"rid"`
	KeyID       string    `json:"kid"`
	OrgID       string    `json:"org,omitempty"`
	TeamID      string    `json:"team,omitempty"`
	ProjectID   string    `json:"proj,omitempty"`
	PrincipalID string    `json:"prn,omitempty"`
	Model       string    `json:"model"` // as the client asked for it
	Format      string    `json:"fmt"`   // client wire format, see wire.Format
	Endpoint    string    `json:"ep"`    // see wire.Endpoint
	Stream      bool      `json:"stream,omitempty"`
	Chain       []Attempt `json:"chain"`
	// Trace is the request's place in its trace: the trace id, the gateway span extproc
	// minted for the request, the client's span it nests under (empty without a client
	// traceparent) and when extproc first saw the request, so that whichever process
	// finishes the request records the gateway span whole.
	Trace *Trace `json:"tr,omitempty"`
	// Inspected: response or stream guardrails inspect the answer after the dispatcher, so
	// what the dispatcher sees is not what the client gets and must not be recorded.
	Inspected bool `json:"insp,omitempty"`
	// CacheMode is the prompt-cache mode that applies: respect, force or disable.
	CacheMode string `json:"cache,omitempty"`
	// BudgetWarning is what X-Sluice-Budget-Warning tells the client ("" for nothing).
	BudgetWarning string `json:"bw,omitempty"`
	// Hold is what admission reserved against budgets and rate limits, for the dispatcher
	// to settle with the real figures; nil when nothing was reserved.
	Hold *Hold `json:"hold,omitempty"`
	// Fallback is the key's own fallback policy; nil means the gateway's: every provider
	// of the chain, on every trigger.
	Fallback *Fallback `json:"fb,omitempty"`
	jwt.RegisteredClaims
}

// Fallback bounds how a request falls back down its chain.
type Fallback struct {
	MaxAttempts int      `json:"n,omitempty"` // 0: no bound but the chain's (and its retries)
	Retries     int      `json:"r,omitempty"` // retries of the same provider before the next
	Triggers    []string `json:"t,omitempty"` // the failure classes that move on; empty: all
}

// Hold names a reservation in the counter store.
type Hold struct {
	Slot     string             `json:"s"`
	Counters []counters.Counter `json:"c"`
	// MaxOutput is the most output the request allows (its max_tokens, or the default
	// assumed), what an answer cut short is charged for.
	MaxOutput int64 `json:"o,omitempty"`
}

// Trace locates a request in its trace; ids are lower-case hex.
type Trace struct {
	TraceID   string `json:"t"`
	SpanID    string `json:"s"`
	ParentID  string `json:"p,omitempty"`
	Unsampled bool   `json:"u,omitempty"`
	// EnvoySpanID is Envoy's own span for the request, when Envoy traces: its spans go to
	// the gateway's collector, so tenants' spans name it rather than nest under it.
	EnvoySpanID string `json:"e,omitempty"`
	StartNanos  int64  `json:"t0"`
}

// Signer mints tokens. It is safe for concurrent use.
type Signer struct {
	key []byte
	now func() time.Time
}

// NewSigner returns a signer for key, which must be at least 32 bytes.
func NewSigner(key []byte) (*Signer, error) {
	if len(key) < 32 {
		return nil, errors.New("ctxtoken: signing key must be at least 32 bytes")
	}
	return &Signer{key: key, now: time.Now}, nil
}

// Sign returns the compact JWT for c; it sets the issuer, issue time and expiry.
func (s *Signer) Sign(c *Claims) (string, error) {
	now := s.now()
	c.Issuer = issuer
	c.IssuedAt = jwt.NewNumericDate(now)
	c.ExpiresAt = jwt.NewNumericDate(now.Add(TTL))
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(s.key)
}

// Verifier checks tokens. It is safe for concurrent use.
type Verifier struct {
	key    []byte
	parser *jwt.Parser
}

// NewVerifier returns a verifier for key.
func NewVerifier(key []byte) (*Verifier, error) {
	if len(key) < 32 {
		return nil, errors.New("ctxtoken: signing key must be at least 32 bytes")
	}
	return &Verifier{key: key, parser: jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(issuer),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(5*time.Second),
	)}, nil
}

// Verify parses and checks a token. The error never contains the token.
func (v *Verifier) Verify(token string) (*Claims, error) {
	if token == "" {
		return nil, errors.New("ctxtoken: missing")
	}
	var c Claims
	if _, err := v.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return v.key, nil }); err != nil {
		return nil, fmt.Errorf("ctxtoken: %w", err)
	}
	if c.RequestID == "" || c.KeyID == "" || len(c.Chain) == 0 {
		return nil, errors.New("ctxtoken: incomplete claims")
	}
	return &c, nil
}
