// Package config is Sluice's configuration model as the data plane consumes it: providers,
// virtual keys (only their keyed hashes) and routing. It is plain, serializable data; each
// process compiles the parts it needs into its own read-only form and publishes that
// atomically.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/sluice-gateway/sluice/internal/pricing"
	"github.com/sluice-gateway/sluice/internal/vkey"
)

// Version is the config schema version this binary understands.
const Version = 1

// Config is the whole data-plane configuration.
type Config struct {
	Version   int        `json:"version"`
	Providers []Provider `json:"providers"`
	Keys      []Key      `json:"keys"`
	// Guardrails are stored documents as the admin API takes them; keys attach them by id.
	Guardrails []Guardrail `json:"guardrails,omitempty"`
	// Projects, when a key's project needs more than its id (its own telemetry), are
	// stored documents as the admin API takes them.
	Projects []Project `json:"projects,omitempty"`
	// Budgets are stored documents as the admin API takes them, scoped to an organization,
	// team, project, principal or key of this file.
	Budgets []Budget `json:"budgets,omitempty"`
}

// Provider is one model provider.
type Provider struct {
	ID   string       `json:"id"`
	Type ProviderType `json:"type"`
	// BaseURL is scheme://host[:port][/prefix] without "/v1"; empty means the type's public API.
	BaseURL string `json:"base_url,omitempty"`
	// APIKeyEnv names the environment variable holding the credential. Config files never hold
	// the credential itself.
	APIKeyEnv string `json:"api_key_env,omitempty"`
	// Models this provider serves, listed by GET /v1/models. Empty: the provider serves any
	// model it is asked for.
	Models []string `json:"models,omitempty"`
	// Limits caps the traffic sent to this provider, across every key.
	Limits RateLimits `json:"limits,omitzero"`
	// Pricing overrides the bundled price table, per model name or "prefix*".
	Pricing pricing.Overrides `json:"pricing,omitempty"`
	// Timeouts bound each attempt at this provider.
	Timeouts Timeouts `json:"timeouts,omitzero"`
}

// Key is one virtual key. The secret is never stored: Hash is HMAC-SHA256(pepper, secret).
type Key struct {
	ID          string `json:"id"`
	Name        string `json:"name,omitempty"`
	Hash        string `json:"hash"`
	OrgID       string `json:"org_id,omitempty"`
	TeamID      string `json:"team_id,omitempty"`
	ProjectID   string `json:"project_id,omitempty"`
	PrincipalID string `json:"principal_id,omitempty"`
	// Providers is the fallback chain by provider id; empty means every provider in config order.
	Providers []string `json:"providers,omitempty"`
	// ModelsAllowed lists the models the key may call, exact or "prefix*"; empty allows all.
	ModelsAllowed []string `json:"models_allowed,omitempty"`
	// ModelAliases maps a name the client sends to the model each provider receives.
	ModelAliases map[string]Alias `json:"model_aliases,omitempty"`
	// Guardrails lists the guardrail ids the key runs.
	Guardrails []string `json:"guardrails,omitempty"`
	// The rest of the key's policy, as in the control plane's key config.
	RateLimits       RateLimits  `json:"rate_limits,omitzero"`
	PolicyRules      PolicyRules `json:"policy_rules,omitzero"`
	CacheMode        CacheMode   `json:"cache_mode,omitempty"`
	DefaultMaxTokens int64       `json:"default_max_tokens,omitempty"`
	Fallback         Fallback    `json:"fallback,omitzero"`
}

// Alias is either one model name for every provider (JSON string) or a map from provider id
// to model name (JSON object), so each provider in a chain can get its own name.
type Alias struct {
	Model      string
	ByProvider map[string]string
}

// UnmarshalJSON accepts a string or an object.
func (a *Alias) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &a.Model)
	}
	return json.Unmarshal(b, &a.ByProvider)
}

// MarshalJSON writes the form it was read in.
func (a Alias) MarshalJSON() ([]byte, error) {
	if a.ByProvider != nil {
		return json.Marshal(a.ByProvider)
	}
	return json.Marshal(a.Model)
}

// For returns the model name provider should receive, and whether the alias covers it.
func (a Alias) For(provider string) (string, bool) {
	if a.ByProvider != nil {
		m, ok := a.ByProvider[provider]
		return m, ok
	}
	return a.Model, a.Model != ""
}

// Load reads and validates a config file.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Config
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("config %s: unexpected data after the config object", path)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return &c, nil
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	if c.Version != Version {
		errs = append(errs, fmt.Errorf("version %d is not supported (want %d)", c.Version, Version))
	}
	providers := map[string]bool{}
	for i, p := range c.Providers {
		switch {
		case p.ID == "":
			errs = append(errs, fmt.Errorf("providers[%d]: id is required", i))
		case providers[p.ID]:
			errs = append(errs, fmt.Errorf("providers[%d]: duplicate id %q", i, p.ID))
		}
		providers[p.ID] = true
		switch p.Type {
		case ProviderOpenAI, ProviderAnthropic, ProviderGemini:
		case ProviderOpenAICompatible, ProviderAzure:
			if p.BaseURL == "" {
				errs = append(errs, fmt.Errorf("provider %q: base_url is required for %s", p.ID, p.Type))
			}
		default:
			errs = append(errs, fmt.Errorf("provider %q: unknown type %q", p.ID, p.Type))
		}
		if p.BaseURL != "" {
			if u, err := url.Parse(p.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				errs = append(errs, fmt.Errorf("provider %q: base_url must be an http(s) URL", p.ID))
			}
		}
	}
	guardrails := map[string]bool{}
	for i := range c.Guardrails {
		g := &c.Guardrails[i]
		if guardrails[g.ID] {
			errs = append(errs, fmt.Errorf("guardrails[%d]: duplicate id %q", i, g.ID))
		}
		guardrails[g.ID] = true
		if err := g.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("guardrails[%d]: %w", i, err))
		}
	}
	budgets := map[string]bool{}
	for i := range c.Budgets {
		b := &c.Budgets[i]
		if budgets[b.ID] {
			errs = append(errs, fmt.Errorf("budgets[%d]: duplicate id %q", i, b.ID))
		}
		budgets[b.ID] = true
		if err := b.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("budgets[%d]: %w", i, err))
		}
	}
	for _, p := range c.Providers {
		if err := p.Limits.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("provider %q: %w", p.ID, err))
		}
		if err := p.Pricing.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("provider %q: pricing: %w", p.ID, err))
		}
		if err := p.Timeouts.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("provider %q: %w", p.ID, err))
		}
	}
	keys := map[string]bool{}
	hashes := map[string]bool{}
	for i, k := range c.Keys {
		switch {
		case !strings.HasPrefix(k.ID, "vk_"):
			errs = append(errs, fmt.Errorf("keys[%d]: id must start with vk_", i))
		case keys[k.ID]:
			errs = append(errs, fmt.Errorf("keys[%d]: duplicate id %q", i, k.ID))
		}
		keys[k.ID] = true
		if _, err := vkey.ParseDigest(k.Hash); err != nil {
			errs = append(errs, fmt.Errorf("key %q: hash: %w", k.ID, err))
		} else if hashes[k.Hash] {
			errs = append(errs, fmt.Errorf("key %q: duplicate hash", k.ID))
		}
		hashes[k.Hash] = true
		for _, p := range k.Providers {
			if !providers[p] {
				errs = append(errs, fmt.Errorf("key %q: unknown provider %q", k.ID, p))
			}
		}
		for _, g := range k.Guardrails {
			if !guardrails[g] {
				errs = append(errs, fmt.Errorf("key %q: unknown guardrail %q", k.ID, g))
			}
		}
	}
	return errors.Join(errs...)
}

// DefaultBaseURL is the public API of a provider type.
func DefaultBaseURL(t ProviderType) string {
	switch t {
	case ProviderAnthropic:
		return "https://api.anthropic.com"
	case ProviderGemini:
		return "https://generativelanguage.googleapis.com"
	}
	return "https://api.openai.com"
}
