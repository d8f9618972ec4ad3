package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/sluice-gateway/sluice/internal/pricing"
	"github.com/sluice-gateway/sluice/internal/secretbox"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// ProviderType names a provider implementation.
type ProviderType string

// Provider types a ModelProvider may have.
const (
	ProviderOpenAI           ProviderType = "openai"
	ProviderAnthropic        ProviderType = "anthropic"
	ProviderOpenAICompatible ProviderType = "openai-compatible"
	ProviderAzure            ProviderType = "azure"
	ProviderBedrock          ProviderType = "bedrock"
	ProviderVertex           ProviderType = "vertex"
	ProviderGemini           ProviderType = "gemini"
)

// ProviderTypes lists every provider type a ModelProvider may have.
func ProviderTypes() []ProviderType {
	return []ProviderType{ProviderOpenAI, ProviderAnthropic, ProviderAzure, ProviderBedrock,
		ProviderVertex, ProviderGemini, ProviderOpenAICompatible}
}

// Speaks reports whether the provider type speaks client wire format f natively, so that
// same-format traffic can pass through byte for byte. Gemini (and Bedrock, Vertex) speak
// neither: every client reaches them through the translation lane.
func (t ProviderType) Speaks(f wire.Format) bool {
	switch t {
	case ProviderOpenAI, ProviderOpenAICompatible, ProviderAzure:
		return f == wire.OpenAI
	case ProviderAnthropic:
		return f == wire.Anthropic
	}
	return false
}

// Dispatchable reports whether the dispatcher serves this type yet: the others are stored
// and distributed, but left out of chains until their lane exists.
func (t ProviderType) Dispatchable() bool {
	switch t {
	case ProviderOpenAI, ProviderAnthropic, ProviderOpenAICompatible, ProviderAzure, ProviderGemini,
		ProviderBedrock, ProviderVertex:
		return true
	}
	return false
}

// Translatable reports whether the translation lane can serve this type to a client of
// another wire format; the others serve only clients of their own format.
func (t ProviderType) Translatable() bool {
	switch t {
	case ProviderOpenAI, ProviderAnthropic, ProviderOpenAICompatible, ProviderGemini, ProviderBedrock, ProviderVertex:
		return true
	}
	return false
}

// DefaultAzureAPIVersion is the Azure OpenAI API version deployment URLs use unless the
// provider sets one.
const DefaultAzureAPIVersion = "2024-10-21"

// AzureConfig is an Azure OpenAI provider's provider_config: which deployment serves each
// model, and the API version deployment URLs carry. A model without a deployment goes to
// the resource's v1 API (/openai/v1/…) with its name in the body.
type AzureConfig struct {
	Deployments map[string]string `json:"deployments,omitempty"`
	APIVersion  string            `json:"api_version,omitempty"`
}

// CloudConfig is the provider_config of a bedrock or vertex provider: the region its calls
// go to and, for Vertex, the Google Cloud project.
type CloudConfig struct {
	Region  string `json:"region"`
	Project string `json:"project,omitempty"`
}

// regionRE: an AWS or Google Cloud region, or Vertex's multi-regions.
var regionRE = regexp.MustCompile(`^([a-z]{2,}(-[a-z0-9]+)+|global|us|eu)$`)

// Cloud decodes the provider_config of a bedrock or vertex provider. Other fields of the
// document (deployments, api_version) are ignored here.
func (p *ModelProvider) Cloud() (CloudConfig, error) {
	var c CloudConfig
	if len(p.ProviderConfig) > 0 {
		if err := json.Unmarshal(p.ProviderConfig, &c); err != nil {
			return c, fmt.Errorf("provider_config: %w", err)
		}
	}
	if !regionRE.MatchString(c.Region) {
		return c, fmt.Errorf("provider_config.region %q is not a region such as us-east-1", c.Region)
	}
	if p.Type == ProviderVertex && c.Project == "" {
		return c, errors.New("provider_config.project is required for vertex")
	}
	return c, nil
}

var azureVersionRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}(-preview)?$`)

// Azure decodes the provider_config of an Azure provider, with the default API version.
func (p *ModelProvider) Azure() (AzureConfig, error) {
	var c AzureConfig
	if len(p.ProviderConfig) > 0 {
		dec := json.NewDecoder(bytes.NewReader(p.ProviderConfig))
		if err := dec.Decode(&c); err != nil {
			return c, fmt.Errorf("provider_config: %w", err)
		}
	}
	if c.APIVersion == "" {
		c.APIVersion = DefaultAzureAPIVersion
	}
	if !azureVersionRE.MatchString(c.APIVersion) {
		return c, fmt.Errorf("provider_config.api_version %q is not a date such as %s", c.APIVersion, DefaultAzureAPIVersion)
	}
	for m, d := range c.Deployments {
		if m == "" || d == "" {
			return c, errors.New("provider_config.deployments: empty model or deployment name")
		}
	}
	return c, nil
}

// RateLimits caps traffic; zero means no limit.
type RateLimits struct {
	RPM int64 `json:"rpm,omitempty"` // requests per minute
	TPM int64 `json:"tpm,omitempty"` // tokens per minute
	RPD int64 `json:"rpd,omitempty"` // requests per day
}

// IsZero reports whether no limit is set.
func (r RateLimits) IsZero() bool { return r == RateLimits{} }

// Validate rejects negative limits.
func (r RateLimits) Validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		v    int64
	}{{"rpm", r.RPM}, {"tpm", r.TPM}, {"rpd", r.RPD}} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("rate_limits.%s is negative", f.name))
		}
	}
	return errors.Join(errs...)
}

// Timeouts bound one attempt at a provider. There is deliberately no total timeout: it would
// cut long, healthy streams.
type Timeouts struct {
	// ConnectMS bounds opening a connection (default 5 s).
	ConnectMS int `json:"connect_ms,omitempty"`
	// FirstByteMS bounds the wait for the provider's response to begin (default 60 s for a
	// stream, 10 min otherwise: a non-streamed answer begins only when it is complete).
	FirstByteMS int `json:"first_byte_ms,omitempty"`
	// StreamIdleMS bounds the silence between two pieces of a streamed answer (default 5 min).
	StreamIdleMS int `json:"stream_idle_ms,omitempty"`
}

// Validate rejects negative or absurd values.
func (t Timeouts) Validate() error {
	const maxMS = 60 * 60 * 1000
	for _, f := range []struct {
		name string
		v    int
	}{{"connect_ms", t.ConnectMS}, {"first_byte_ms", t.FirstByteMS}, {"stream_idle_ms", t.StreamIdleMS}} {
		if f.v < 0 || f.v > maxMS {
			return fmt.Errorf("timeouts.%s %d is not in 0..%d", f.name, f.v, maxMS)
		}
	}
	return nil
}

// ModelProvider is one upstream account: a provider type, where to reach it and the
// credential to use, sealed under the master key.
type ModelProvider struct {
	ID   string       `json:"id"`
	Name string       `json:"name"`
	Type ProviderType `json:"type"`
	// BaseURL overrides the type's public endpoint; required for openai-compatible and azure.
	BaseURL string `json:"base_url,omitempty"`
	// Credentials is the API key (or, for bedrock and vertex, the credential document),
	// sealed with CredentialsAAD(ID) as associated data. It is never stored in clear.
	Credentials secretbox.Sealed `json:"credentials,omitzero"`
	// CredentialsEnv, instead of Credentials, names an environment variable of the
	// dispatcher's process that holds the credential (e.g. from a Kubernetes Secret).
	CredentialsEnv string `json:"credentials_env,omitempty"`
	// ProviderConfig holds type-specific settings as a JSON object: region, deployment
	// map, api_version, project.
	ProviderConfig json.RawMessage `json:"provider_config,omitempty"`
	Limits         RateLimits      `json:"limits,omitzero"`
	// Pricing overrides the bundled price table for this provider, per model name or
	// "prefix*" (USD per million tokens).
	Pricing pricing.Overrides `json:"pricing,omitempty"`
	// Timeouts bound each attempt at this provider; zero values take the gateway defaults.
	Timeouts Timeouts `json:"timeouts,omitzero"`
	// Models lists the models this provider serves (and GET /v1/models shows); empty means
	// it is asked for any model.
	Models []string `json:"models,omitempty"`
	// FallbackPriority orders providers of a scope for keys without a routing policy:
	// lower first, then by creation time.
	FallbackPriority int `json:"fallback_priority"`
	// Scope is where the provider is visible; it is inherited downward.
	Scope     Scope     `json:"scope"`
	CreatedAt time.Time `json:"created_at,omitzero"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// ResourceKind implements [Resource].
func (*ModelProvider) ResourceKind() Kind { return KindModelProvider }

// ResourceID implements [Resource].
func (p *ModelProvider) ResourceID() string { return p.ID }

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// CredentialsAAD is the associated data a provider's credentials are sealed with, so a
// ciphertext moved onto another provider fails to open.
func CredentialsAAD(providerID string) []byte {
	return []byte("sluice/model_provider/" + providerID + "/credentials")
}

// Validate reports every problem with p.
func (p *ModelProvider) Validate() error {
	errs := []error{ValidateID(KindModelProvider, p.ID), validateName("model provider", p.Name, true)}
	known := false
	for _, t := range ProviderTypes() {
		known = known || p.Type == t
	}
	if !known {
		errs = append(errs, fmt.Errorf("model provider %s: unknown type %q", p.ID, p.Type))
	}
	if p.BaseURL == "" && (p.Type == ProviderOpenAICompatible || p.Type == ProviderAzure) {
		errs = append(errs, fmt.Errorf("model provider %s: base_url is required for %s", p.ID, p.Type))
	}
	if p.BaseURL != "" {
		if u, err := url.Parse(p.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			errs = append(errs, fmt.Errorf("model provider %s: base_url must be an http(s) URL without credentials", p.ID))
		}
	}
	if !p.Credentials.IsZero() {
		if err := p.Credentials.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("model provider %s: credentials: %w", p.ID, err))
		}
	}
	if !p.Credentials.IsZero() && p.CredentialsEnv != "" {
		errs = append(errs, fmt.Errorf("model provider %s: credentials and credentials_env are exclusive", p.ID))
	}
	if p.CredentialsEnv != "" && !envNameRE.MatchString(p.CredentialsEnv) {
		errs = append(errs, fmt.Errorf("model provider %s: credentials_env %q is not an environment variable name", p.ID, p.CredentialsEnv))
	}
	// The gateway's own secrets live in SLUICE_* variables; a provider must never be able to
	// name one (it would be sent to the provider's host as its credential).
	if strings.HasPrefix(strings.ToUpper(p.CredentialsEnv), "SLUICE_") {
		errs = append(errs, fmt.Errorf("model provider %s: credentials_env may not name a SLUICE_ variable", p.ID))
	}
	if len(p.ProviderConfig) > 0 {
		var obj map[string]json.RawMessage
		if t := bytes.TrimSpace(p.ProviderConfig); len(t) == 0 || t[0] != '{' || json.Unmarshal(t, &obj) != nil {
			errs = append(errs, fmt.Errorf("model provider %s: provider_config must be a JSON object", p.ID))
		}
	}
	if err := p.Limits.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("model provider %s: %w", p.ID, err))
	}
	if err := p.Pricing.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("model provider %s: pricing: %w", p.ID, err))
	}
	if err := p.Timeouts.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("model provider %s: %w", p.ID, err))
	}
	switch p.Type {
	case ProviderAzure:
		if _, err := p.Azure(); err != nil {
			errs = append(errs, fmt.Errorf("model provider %s: %w", p.ID, err))
		}
	case ProviderBedrock, ProviderVertex:
		if _, err := p.Cloud(); err != nil {
			errs = append(errs, fmt.Errorf("model provider %s: %w", p.ID, err))
		}
	}
	if p.FallbackPriority < 0 {
		errs = append(errs, fmt.Errorf("model provider %s: fallback_priority is negative", p.ID))
	}
	if err := validateTenantScope(p.Scope); err != nil {
		errs = append(errs, fmt.Errorf("model provider %s: %w", p.ID, err))
	}
	return errors.Join(errs...)
}
