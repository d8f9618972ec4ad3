package config

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/sluice-gateway/sluice/internal/vkey"
)

// KeyStatus is a virtual key's lifecycle state. Expiry is not a status: a key past
// ExpiresAt is refused whatever its status.
type KeyStatus string

// Key statuses. Revoked is permanent.
const (
	KeyActive   KeyStatus = "active"
	KeyDisabled KeyStatus = "disabled"
	KeyRevoked  KeyStatus = "revoked"
)

// VirtualKey is a client credential. Its secret is never stored: Hash is
// hex(HMAC-SHA256(pepper, secret)) and DisplayPrefix the short non-secret head shown in
// listings.
type VirtualKey struct {
	ID            string    `json:"id"`
	Name          string    `json:"name"`
	Scope         Scope     `json:"scope"`
	PrincipalID   string    `json:"principal_id,omitempty"`
	Hash          string    `json:"hash"`
	DisplayPrefix string    `json:"display_prefix"`
	Status        KeyStatus `json:"status"`
	// ExpiresAt, when set, is when the key stops working.
	ExpiresAt       *time.Time `json:"expires_at,omitempty"`
	RoutingPolicyID string     `json:"routing_policy_id,omitempty"`
	Config          KeyConfig  `json:"config"`
	// PreviousHash is the hash of the secret a rotation replaced; it keeps working until
	// PreviousHashValidUntil (the rotation grace).
	PreviousHash           string     `json:"previous_hash,omitempty"`
	PreviousHashValidUntil *time.Time `json:"previous_hash_valid_until,omitempty"`
	CreatedAt              time.Time  `json:"created_at,omitzero"`
	UpdatedAt              time.Time  `json:"updated_at,omitzero"`
}

// ResourceKind implements [Resource].
func (*VirtualKey) ResourceKind() Kind { return KindVirtualKey }

// ResourceID implements [Resource].
func (k *VirtualKey) ResourceID() string { return k.ID }

// maxDisplayPrefix bounds DisplayPrefix so a listing can never show a usable secret.
var maxDisplayPrefix = len(vkey.Prefix) + 8

// Validate reports every problem with k, the key config included.
func (k *VirtualKey) Validate() error {
	errs := []error{ValidateID(KindVirtualKey, k.ID), validateName("virtual key", k.Name, true)}
	wrap := func(err error) error { return fmt.Errorf("virtual key %s: %w", k.ID, err) }
	if err := validateTenantScope(k.Scope); err != nil {
		errs = append(errs, wrap(err))
	}
	if k.PrincipalID != "" {
		if err := ValidateID(KindPrincipal, k.PrincipalID); err != nil {
			errs = append(errs, wrap(fmt.Errorf("principal_id: %w", err)))
		}
	}
	if _, err := vkey.ParseDigest(k.Hash); err != nil {
		errs = append(errs, wrap(fmt.Errorf("hash: %w", err)))
	}
	if !strings.HasPrefix(k.DisplayPrefix, vkey.Prefix) || len(k.DisplayPrefix) > maxDisplayPrefix {
		errs = append(errs, wrap(fmt.Errorf("display_prefix must start with %s and be at most %d characters", vkey.Prefix, maxDisplayPrefix)))
	}
	switch k.Status {
	case KeyActive, KeyDisabled, KeyRevoked:
	default:
		errs = append(errs, wrap(fmt.Errorf("status %q is not active, disabled or revoked", k.Status)))
	}
	if k.RoutingPolicyID != "" {
		if err := ValidateID(KindRoutingPolicy, k.RoutingPolicyID); err != nil {
			errs = append(errs, wrap(fmt.Errorf("routing_policy_id: %w", err)))
		}
	}
	switch {
	case k.PreviousHash == "" && k.PreviousHashValidUntil != nil:
		errs = append(errs, wrap(errors.New("previous_hash_valid_until is set without previous_hash")))
	case k.PreviousHash != "":
		if _, err := vkey.ParseDigest(k.PreviousHash); err != nil {
			errs = append(errs, wrap(fmt.Errorf("previous_hash: %w", err)))
		} else if k.PreviousHash == k.Hash {
			errs = append(errs, wrap(errors.New("previous_hash equals hash")))
		}
		if k.PreviousHashValidUntil == nil {
			errs = append(errs, wrap(errors.New("previous_hash needs previous_hash_valid_until")))
		}
	}
	if err := k.Config.Validate(); err != nil {
		errs = append(errs, wrap(err))
	}
	return errors.Join(errs...)
}

// Expired reports whether k is past its expiry at now.
func (k *VirtualKey) Expired(now time.Time) bool {
	return k.ExpiresAt != nil && !now.Before(*k.ExpiresAt)
}

// FallbackTrigger names a failure class that moves a request to the next provider. Other
// 4xx never trigger fallback.
type FallbackTrigger string

// Fallback triggers.
const (
	Trigger5xx         FallbackTrigger = "5xx"
	Trigger429         FallbackTrigger = "429"
	TriggerTimeout     FallbackTrigger = "timeout"
	TriggerNetwork     FallbackTrigger = "network_error"
	TriggerCircuitOpen FallbackTrigger = "circuit_open"
)

// MaxFallbackAttempts bounds Fallback.MaxAttempts, and MaxRetries Fallback.Retries.
const (
	MaxFallbackAttempts = 10
	MaxRetries          = 3
)

// Fallback tunes how a key falls back down its provider chain. Zero values mean the
// gateway defaults (every provider in the chain; every trigger).
type Fallback struct {
	MaxAttempts int `json:"max_attempts,omitempty"`
	// Retries is how many times a provider is tried again, after a pause (its retry-after,
	// when at most 5 s; else a short backoff), before the next; 0 by default: no hidden
	// retry amplification.
	Retries  int               `json:"retries,omitempty"`
	Triggers []FallbackTrigger `json:"triggers,omitempty"`
}

// RuleSet is a deny list and an optional allow list of RE2 regular expressions, matched
// anywhere in the subject unless anchored. Deny wins. A nil Allow means everything not
// denied is allowed; a non-nil empty Allow allows nothing.
type RuleSet struct {
	Deny  []string  `json:"deny,omitempty"`
	Allow *[]string `json:"allow"`
}

// PolicyRules constrains what a request may ask for: tool names, MCP servers and URLs.
type PolicyRules struct {
	Tools RuleSet `json:"tools,omitzero"`
	MCP   RuleSet `json:"mcp,omitzero"`
	URLs  RuleSet `json:"urls,omitzero"`
}

// IsZero reports whether r has no rules.
func (r RuleSet) IsZero() bool { return len(r.Deny) == 0 && r.Allow == nil }

// CacheMode is a key's default for X-Sluice-Cache.
type CacheMode string

// Cache modes; "" means the gateway default.
const (
	CacheRespect CacheMode = "respect"
	CacheForce   CacheMode = "force"
	CacheDisable CacheMode = "disable"
)

// KeyConfig is the per-key policy document (the CLI's --config-json).
type KeyConfig struct {
	ModelAliases     map[string]Alias `json:"model_aliases,omitempty"`
	ModelsAllowed    []string         `json:"models_allowed,omitempty"`
	ProvidersAllowed []string         `json:"providers_allowed,omitempty"`
	Fallback         Fallback         `json:"fallback,omitzero"`
	PolicyRules      PolicyRules      `json:"policy_rules,omitzero"`
	CacheMode        CacheMode        `json:"cache_mode,omitempty"`
	Guardrails       []string         `json:"guardrails,omitempty"`
	RateLimits       RateLimits       `json:"rate_limits,omitzero"`
	// DefaultMaxTokens is the output a request without max_tokens is assumed to reach when
	// its worst-case cost is reserved against budgets; 0 means the gateway's default.
	DefaultMaxTokens int64 `json:"default_max_tokens,omitempty"`
}

// Validate reports every problem with c, compiling every regular expression.
func (c *KeyConfig) Validate() error {
	var errs []error
	for name, a := range c.ModelAliases {
		if name == "" {
			errs = append(errs, errors.New("model_aliases: empty alias name"))
		}
		if a.Model == "" && len(a.ByProvider) == 0 {
			errs = append(errs, fmt.Errorf("model_aliases[%q]: no target model", name))
		}
		for p, m := range a.ByProvider {
			if p == "" || m == "" {
				errs = append(errs, fmt.Errorf("model_aliases[%q]: empty provider or model", name))
			}
		}
	}
	for i, m := range c.ModelsAllowed {
		if m == "" || strings.Contains(strings.TrimSuffix(m, "*"), "*") {
			errs = append(errs, fmt.Errorf("models_allowed[%d]: %q: want an exact model or a \"prefix*\"", i, m))
		}
	}
	errs = append(errs, idList("providers_allowed", KindModelProvider, c.ProvidersAllowed)...)
	if c.Fallback.MaxAttempts < 0 || c.Fallback.MaxAttempts > MaxFallbackAttempts {
		errs = append(errs, fmt.Errorf("fallback.max_attempts %d is not in 0..%d", c.Fallback.MaxAttempts, MaxFallbackAttempts))
	}
	if c.Fallback.Retries < 0 || c.Fallback.Retries > MaxRetries {
		errs = append(errs, fmt.Errorf("fallback.retries %d is not in 0..%d", c.Fallback.Retries, MaxRetries))
	}
	for i, tr := range c.Fallback.Triggers {
		switch tr {
		case Trigger5xx, Trigger429, TriggerTimeout, TriggerNetwork, TriggerCircuitOpen:
		default:
			errs = append(errs, fmt.Errorf("fallback.triggers[%d]: unknown trigger %q", i, tr))
		}
	}
	for _, rs := range []struct {
		name string
		r    RuleSet
	}{{"tools", c.PolicyRules.Tools}, {"mcp", c.PolicyRules.MCP}, {"urls", c.PolicyRules.URLs}} {
		if _, err := rs.r.Compile(); err != nil {
			errs = append(errs, fmt.Errorf("policy_rules.%s: %w", rs.name, err))
		}
	}
	switch c.CacheMode {
	case "", CacheRespect, CacheForce, CacheDisable:
	default:
		errs = append(errs, fmt.Errorf("cache_mode %q is not respect, force or disable", c.CacheMode))
	}
	for i, g := range c.Guardrails {
		if !slugRE.MatchString(g) {
			errs = append(errs, fmt.Errorf("guardrails[%d]: %q is not a guardrail id", i, g))
		}
	}
	if err := c.RateLimits.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.DefaultMaxTokens < 0 {
		errs = append(errs, errors.New("default_max_tokens is negative"))
	}
	return errors.Join(errs...)
}

// Rules is a compiled RuleSet, safe for concurrent use.
type Rules struct {
	deny  []*regexp.Regexp
	allow []*regexp.Regexp // nil: no allow list
}

// Compile compiles every pattern, reporting every one that fails.
func (r RuleSet) Compile() (*Rules, error) {
	var errs []error
	compile := func(list string, pats []string) []*regexp.Regexp {
		out := make([]*regexp.Regexp, 0, len(pats))
		for i, p := range pats {
			re, err := regexp.Compile(p)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s[%d]: %w", list, i, err))
				continue
			}
			out = append(out, re)
		}
		return out
	}
	c := &Rules{deny: compile("deny", r.Deny)}
	if r.Allow != nil {
		c.allow = compile("allow", *r.Allow)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

// Allows reports whether s passes: no deny pattern matches, and either there is no allow
// list or an allow pattern matches.
func (c *Rules) Allows(s string) bool {
	for _, re := range c.deny {
		if re.MatchString(s) {
			return false
		}
	}
	if c.allow == nil {
		return true
	}
	for _, re := range c.allow {
		if re.MatchString(s) {
			return true
		}
	}
	return false
}
