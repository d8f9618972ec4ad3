package config

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"strings"
	"time"
)

// This file holds the control plane's resource model: the documents the xds store keeps
// and the admin API reads and writes. Each type is plain serializable data with a
// Validate method that reports every problem at once; none holds a secret in clear.

// Kind names a resource type. Its string is the stable name used as a store namespace and
// in the admin API.
type Kind string

// Resource kinds.
const (
	KindOrganization  Kind = "organization"
	KindTeam          Kind = "team"
	KindProject       Kind = "project"
	KindPrincipal     Kind = "principal"
	KindModelProvider Kind = "model_provider"
	KindVirtualKey    Kind = "virtual_key"
	KindRoutingPolicy Kind = "routing_policy"
	KindBudget        Kind = "budget"
	KindGuardrail     Kind = "guardrail"
	// KindAPIToken is an admin API credential. It stays in the control plane: the fleet
	// never receives it, and it has no data-plane type.
	KindAPIToken Kind = "api_token"
)

// Kinds lists every resource kind.
func Kinds() []Kind {
	return []Kind{KindOrganization, KindTeam, KindProject, KindPrincipal,
		KindModelProvider, KindVirtualKey, KindRoutingPolicy, KindBudget, KindGuardrail, KindAPIToken}
}

var idPrefixes = map[Kind]string{
	KindOrganization:  "org_",
	KindTeam:          "team_",
	KindProject:       "proj_",
	KindPrincipal:     "prin_",
	KindModelProvider: "mp_",
	KindVirtualKey:    "vk_",
	KindRoutingPolicy: "rp_",
	KindBudget:        "bg_",
	KindGuardrail:     "gr_",
	KindAPIToken:      "apitok_",
}

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool { _, ok := idPrefixes[k]; return ok }

// IDPrefix is the prefix of ids NewID mints for k ("vk_" for virtual keys).
func (k Kind) IDPrefix() string { return idPrefixes[k] }

// generated reports whether ids of k are always minted by NewID. Organizations, teams,
// projects and principals may instead carry a user-chosen slug ("acme", "eng"), since
// scopes such as TEAM:eng name them directly; so may model providers ("openai",
// "anthropic-eu"), since aliases and routing policies name them; and so may guardrails
// ("pii-redact"), since key and scope configs name them.
func (k Kind) generated() bool {
	switch k {
	case KindVirtualKey, KindRoutingPolicy, KindBudget, KindAPIToken:
		return true
	}
	return false
}

// NewID returns a fresh id for kind: its prefix and a ULID (48-bit millisecond time, 80
// random bits, Crockford base32), so ids of one kind sort by creation time. It panics on
// an unknown kind, which is a programming error.
func NewID(kind Kind) string {
	p, ok := idPrefixes[kind]
	if !ok {
		panic(fmt.Sprintf("config.NewID: unknown kind %q", kind))
	}
	return p + newULID(time.Now())
}

// newULID encodes 48 bits of t's Unix milliseconds and 80 random bits as 26 Crockford
// base32 characters (the 128 bits left-padded with two zero bits).
func newULID(t time.Time) string {
	const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	var b [16]byte
	ms := uint64(t.UnixMilli())
	for i := 5; i >= 0; i-- {
		b[i] = byte(ms)
		ms >>= 8
	}
	_, _ = rand.Read(b[6:])   // crypto/rand.Read never fails on supported platforms
	bit := func(j int) byte { // bit j of the 130-bit padded number, MSB first
		j -= 2
		if j < 0 {
			return 0
		}
		return b[j/8] >> (7 - j%8) & 1
	}
	out := make([]byte, 26)
	for i := range out {
		var v byte
		for j := 0; j < 5; j++ {
			v = v<<1 | bit(i*5+j)
		}
		out[i] = crockford[v]
	}
	return string(out)
}

// ValidateID checks that id is acceptable for kind: generated kinds need their prefix and
// a slug after it; the others accept any slug.
func ValidateID(kind Kind, id string) error {
	if !kind.Valid() {
		return fmt.Errorf("unknown kind %q", kind)
	}
	if !slugRE.MatchString(id) {
		return fmt.Errorf("%s id %q: must be 1-128 characters of letters, digits, '.', '_' or '-'", kind, id)
	}
	if kind.generated() && (!strings.HasPrefix(id, kind.IDPrefix()) || len(id) == len(kind.IDPrefix())) {
		return fmt.Errorf("%s id %q: must start with %s", kind, id, kind.IDPrefix())
	}
	return nil
}

// Resource is implemented by every stored document type.
type Resource interface {
	ResourceKind() Kind
	ResourceID() string
	Validate() error
}

// NewResource returns a pointer to an empty value of kind's type, for decoding.
func NewResource(kind Kind) (Resource, error) {
	switch kind {
	case KindOrganization:
		return &Organization{}, nil
	case KindTeam:
		return &Team{}, nil
	case KindProject:
		return &Project{}, nil
	case KindPrincipal:
		return &Principal{}, nil
	case KindModelProvider:
		return &ModelProvider{}, nil
	case KindVirtualKey:
		return &VirtualKey{}, nil
	case KindRoutingPolicy:
		return &RoutingPolicy{}, nil
	case KindBudget:
		return &Budget{}, nil
	case KindGuardrail:
		return &Guardrail{}, nil
	case KindAPIToken:
		return nil, fmt.Errorf("kind %q is private to the admin API", kind)
	}
	return nil, fmt.Errorf("unknown kind %q", kind)
}

// DecodeResource decodes a stored document of kind. It does not validate: a document
// written by a newer binary may carry fields this one ignores.
func DecodeResource(kind Kind, b []byte) (Resource, error) {
	r, err := NewResource(kind)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, fmt.Errorf("decode %s: %w", kind, err)
	}
	return r, nil
}

const maxNameLen = 256

func validateName(what, name string, required bool) error {
	switch {
	case name == "" && required:
		return fmt.Errorf("%s: name is required", what)
	case len(name) > maxNameLen:
		return fmt.Errorf("%s: name is longer than %d bytes", what, maxNameLen)
	case strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("%s: name contains control characters", what)
	}
	return nil
}

// Organization is the root of the tenancy tree.
type Organization struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Guardrails apply to every key in the organization.
	Guardrails []string  `json:"guardrails,omitempty"`
	CreatedAt  time.Time `json:"created_at,omitzero"`
	UpdatedAt  time.Time `json:"updated_at,omitzero"`
}

// Team belongs to an organization.
type Team struct {
	ID    string `json:"id"`
	OrgID string `json:"org_id"`
	Name  string `json:"name"`
	// Guardrails apply to every key in the team and its projects.
	Guardrails []string  `json:"guardrails,omitempty"`
	CreatedAt  time.Time `json:"created_at,omitzero"`
	UpdatedAt  time.Time `json:"updated_at,omitzero"`
}

// Project belongs to an organization and optionally to one of its teams.
type Project struct {
	ID     string `json:"id"`
	OrgID  string `json:"org_id"`
	TeamID string `json:"team_id,omitempty"`
	Name   string `json:"name"`
	// Guardrails apply to every key in the project.
	Guardrails []string `json:"guardrails,omitempty"`
	// Telemetry, when set, files the project's traces with its own collector.
	Telemetry *ProjectTelemetry `json:"telemetry,omitempty"`
	CreatedAt time.Time         `json:"created_at,omitzero"`
	UpdatedAt time.Time         `json:"updated_at,omitzero"`
}

// ProjectTelemetry routes a project's spans to its own OTLP collector: a shared gateway
// files each tenant's traces with that tenant.
type ProjectTelemetry struct {
	// OTLPEndpoint is http(s)://host:port[/path] for OTLP/HTTP, or grpc(s)://host:port for
	// OTLP/gRPC. Empty: the project's spans go to the gateway's own collector.
	OTLPEndpoint string `json:"otlp_endpoint,omitempty"`
	// OTLPHeadersEnv maps a header sent with every export to the environment variable of
	// the gateway's processes that holds its value (a collector's API key stays out of
	// config).
	OTLPHeadersEnv map[string]string `json:"otlp_headers_env,omitempty"`
	// CaptureContent records prompts and completions on the project's spans. Off unless
	// the project turns it on.
	CaptureContent bool `json:"capture_content,omitempty"`
}

// Validate reports every problem with t.
func (t *ProjectTelemetry) Validate() error {
	var errs []error
	if t.OTLPEndpoint != "" {
		u, err := url.Parse(t.OTLPEndpoint)
		switch {
		case err != nil || u.Host == "" || u.User != nil:
			errs = append(errs, fmt.Errorf("telemetry.otlp_endpoint must be a URL with a host and no credentials"))
		case u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "grpc" && u.Scheme != "grpcs":
			errs = append(errs, fmt.Errorf("telemetry.otlp_endpoint scheme %q is not http, https, grpc or grpcs", u.Scheme))
		}
	}
	for h, env := range t.OTLPHeadersEnv {
		if h == "" || strings.ContainsAny(h, " :\r\n") {
			errs = append(errs, fmt.Errorf("telemetry.otlp_headers_env: %q is not a header name", h))
		}
		if !envNameRE.MatchString(env) || strings.HasPrefix(strings.ToUpper(env), "SLUICE_") {
			errs = append(errs, fmt.Errorf("telemetry.otlp_headers_env[%q]: %q is not an environment variable name outside SLUICE_*", h, env))
		}
	}
	if len(t.OTLPHeadersEnv) > 0 && t.OTLPEndpoint == "" {
		errs = append(errs, errors.New("telemetry.otlp_headers_env needs otlp_endpoint"))
	}
	return errors.Join(errs...)
}

// Principal is a person (or a service identity) keys can be issued to.
type Principal struct {
	ID        string    `json:"id"`
	OrgID     string    `json:"org_id"`
	Name      string    `json:"name,omitempty"`
	Email     string    `json:"email,omitempty"`
	CreatedAt time.Time `json:"created_at,omitzero"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// ResourceKind implements [Resource].
func (*Organization) ResourceKind() Kind { return KindOrganization }

// ResourceKind implements [Resource].
func (*Team) ResourceKind() Kind { return KindTeam }

// ResourceKind implements [Resource].
func (*Project) ResourceKind() Kind { return KindProject }

// ResourceKind implements [Resource].
func (*Principal) ResourceKind() Kind { return KindPrincipal }

// ResourceID implements [Resource].
func (o *Organization) ResourceID() string { return o.ID }

// ResourceID implements [Resource].
func (t *Team) ResourceID() string { return t.ID }

// ResourceID implements [Resource].
func (p *Project) ResourceID() string { return p.ID }

// ResourceID implements [Resource].
func (p *Principal) ResourceID() string { return p.ID }

// Validate reports every problem with o.
func (o *Organization) Validate() error {
	return errors.Join(ValidateID(KindOrganization, o.ID), validateName("organization", o.Name, true),
		errors.Join(idList("organization "+o.ID+": guardrails", KindGuardrail, o.Guardrails)...))
}

// Validate reports every problem with t.
func (t *Team) Validate() error {
	return errors.Join(ValidateID(KindTeam, t.ID), parentID("team", "org_id", KindOrganization, t.OrgID),
		validateName("team", t.Name, true), errors.Join(idList("team "+t.ID+": guardrails", KindGuardrail, t.Guardrails)...))
}

// Validate reports every problem with p.
func (p *Project) Validate() error {
	errs := []error{ValidateID(KindProject, p.ID), parentID("project", "org_id", KindOrganization, p.OrgID),
		validateName("project", p.Name, true)}
	errs = append(errs, idList("project "+p.ID+": guardrails", KindGuardrail, p.Guardrails)...)
	if p.Telemetry != nil {
		if err := p.Telemetry.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("project %s: %w", p.ID, err))
		}
	}
	if p.TeamID != "" {
		errs = append(errs, parentID("project", "team_id", KindTeam, p.TeamID))
	}
	return errors.Join(errs...)
}

// Validate reports every problem with p.
func (p *Principal) Validate() error {
	errs := []error{ValidateID(KindPrincipal, p.ID), parentID("principal", "org_id", KindOrganization, p.OrgID),
		validateName("principal", p.Name, false)}
	if p.Email != "" {
		if a, err := mail.ParseAddress(p.Email); err != nil || a.Address != p.Email {
			errs = append(errs, fmt.Errorf("principal %s: email %q is not an address", p.ID, p.Email))
		}
	}
	return errors.Join(errs...)
}

func parentID(what, field string, kind Kind, id string) error {
	if id == "" {
		return fmt.Errorf("%s: %s is required", what, field)
	}
	if err := ValidateID(kind, id); err != nil {
		return fmt.Errorf("%s: %s: %w", what, field, err)
	}
	return nil
}

// RoutingStrategy says how a routing policy orders its providers.
type RoutingStrategy string

// StrategyOrdered tries the providers in the listed order, falling back down the list.
const StrategyOrdered RoutingStrategy = "ordered"

// RoutingPolicy is a named provider chain keys can point at. A key without one uses its
// scope's default order (fallback priority, then creation time).
type RoutingPolicy struct {
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Scope     Scope           `json:"scope"`
	Strategy  RoutingStrategy `json:"strategy"`
	Providers []string        `json:"providers"`
	CreatedAt time.Time       `json:"created_at,omitzero"`
	UpdatedAt time.Time       `json:"updated_at,omitzero"`
}

// ResourceKind implements [Resource].
func (*RoutingPolicy) ResourceKind() Kind { return KindRoutingPolicy }

// ResourceID implements [Resource].
func (r *RoutingPolicy) ResourceID() string { return r.ID }

// Validate reports every problem with r. Whether the providers exist is checked against
// the store by the admin API, not here.
func (r *RoutingPolicy) Validate() error {
	errs := []error{ValidateID(KindRoutingPolicy, r.ID), validateName("routing policy", r.Name, true)}
	if err := validateTenantScope(r.Scope); err != nil {
		errs = append(errs, fmt.Errorf("routing policy %s: %w", r.ID, err))
	}
	if r.Strategy != StrategyOrdered {
		errs = append(errs, fmt.Errorf("routing policy %s: strategy %q is not supported (want %q)", r.ID, r.Strategy, StrategyOrdered))
	}
	if len(r.Providers) == 0 {
		errs = append(errs, fmt.Errorf("routing policy %s: providers is empty", r.ID))
	}
	errs = append(errs, idList("routing policy "+r.ID+": providers", KindModelProvider, r.Providers)...)
	return errors.Join(errs...)
}

// idList checks that every id is valid for kind and appears once.
func idList(what string, kind Kind, ids []string) []error {
	var errs []error
	seen := make(map[string]bool, len(ids))
	for i, id := range ids {
		if err := ValidateID(kind, id); err != nil {
			errs = append(errs, fmt.Errorf("%s[%d]: %w", what, i, err))
		} else if seen[id] {
			errs = append(errs, fmt.Errorf("%s[%d]: duplicate %q", what, i, id))
		}
		seen[id] = true
	}
	return errs
}

// BudgetWindow is the period a budget's spend accumulates over.
type BudgetWindow string

// Budget windows. Calendar windows (day, week, month) are in UTC.
const (
	WindowMinute BudgetWindow = "minute"
	WindowHour   BudgetWindow = "hour"
	WindowDay    BudgetWindow = "day"
	WindowWeek   BudgetWindow = "week"
	WindowMonth  BudgetWindow = "month"
	WindowTotal  BudgetWindow = "total"
)

// BreachAction is what happens when spend reaches a budget's limit.
type BreachAction string

// Breach actions.
const (
	BreachBlock BreachAction = "block" // refuse requests with budget_exceeded
	BreachWarn  BreachAction = "warn"  // serve, with X-Sluice-Budget-Warning
)

// Budget caps spend for a scope (which may be a single virtual key) over a window.
type Budget struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Scope Scope  `json:"scope"`
	// Window is the accumulation period.
	Window BudgetWindow `json:"window"`
	// LimitNanoUSD is the limit; in JSON it is "limit_usd", a decimal string of dollars.
	LimitNanoUSD NanoUSD      `json:"limit_usd"`
	OnBreach     BreachAction `json:"on_breach"`
	CreatedAt    time.Time    `json:"created_at,omitzero"`
	UpdatedAt    time.Time    `json:"updated_at,omitzero"`
}

// ResourceKind implements [Resource].
func (*Budget) ResourceKind() Kind { return KindBudget }

// ResourceID implements [Resource].
func (b *Budget) ResourceID() string { return b.ID }

// Validate reports every problem with b.
func (b *Budget) Validate() error {
	errs := []error{ValidateID(KindBudget, b.ID), validateName("budget", b.Name, true)}
	if b.Scope.IsZero() {
		errs = append(errs, fmt.Errorf("budget %s: scope is required", b.ID))
	} else if err := b.Scope.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("budget %s: %w", b.ID, err))
	}
	switch b.Window {
	case WindowMinute, WindowHour, WindowDay, WindowWeek, WindowMonth, WindowTotal:
	default:
		errs = append(errs, fmt.Errorf("budget %s: window %q is not one of minute, hour, day, week, month, total", b.ID, b.Window))
	}
	if b.LimitNanoUSD < 0 {
		errs = append(errs, fmt.Errorf("budget %s: limit_usd is negative", b.ID))
	}
	switch b.OnBreach {
	case BreachBlock, BreachWarn:
	default:
		errs = append(errs, fmt.Errorf("budget %s: on_breach %q is not block or warn", b.ID, b.OnBreach))
	}
	return errors.Join(errs...)
}
