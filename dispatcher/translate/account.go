package translate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/maximhq/bifrost/core/schemas"
)

// Bifrost keys its provider workers by name. Sluice needs only one worker pool per
// provider implementation: the base URL and the credential vary per attempt and travel in
// the request context (see attemptContext), so one pool serves every configured provider
// of that type. Gemini needs two, one per scheme: Bifrost's Gemini provider puts its
// pool's base URL in front of the per-request path, so the scheme is all a pool fixes (see
// geminiPools).
var bifrostProviders = []schemas.ModelProvider{schemas.OpenAI, schemas.Anthropic, schemas.Gemini}

// geminiHTTP is the pool for Gemini providers reached over plain http (a local proxy or a
// test double). It is a Bifrost custom provider on the Gemini implementation, created on
// its first attempt rather than at start, so a gateway without such a provider runs no
// workers for it.
const geminiHTTP schemas.ModelProvider = "sluice-gemini-http"

// geminiPools are the Gemini pools and the base URL each is given: just a scheme. Bifrost's
// Gemini provider builds every URL as its base URL followed by the path in
// BifrostContextKeyURLPath (providers/gemini completeRequest, ChatCompletionStream), and
// has no per-request base URL; with "https:" as the base and "//host/prefix/v1beta/models/…"
// as the path, the request goes where the attempt's provider says, and one pool serves
// every Gemini provider of that scheme.
var geminiPools = map[schemas.ModelProvider]string{schemas.Gemini: "https:", geminiHTTP: "http:"}

// lazyPools are configured but not started with the engine: Bifrost creates each on its
// first attempt, so a gateway without such a provider runs no workers for it. One Bedrock
// pool serves every Bedrock provider, and one Vertex pool every Vertex provider: the
// region, project and credential are in the key (see bedrockKey, vertexKey).
var lazyPools = []schemas.ModelProvider{geminiHTTP, schemas.Bedrock, schemas.Vertex}

// ctxKeyCredential carries the attempt's credential to account.GetKeysForProvider. It is
// unexported so nothing outside this package can plant a key.
type ctxKeyCredential struct{}

// account is the schemas.Account Bifrost asks for provider configs and keys.
type account struct {
	configs map[schemas.ModelProvider]*schemas.ProviderConfig
}

func newAccount(cfg Config) *account {
	a := &account{configs: make(map[schemas.ModelProvider]*schemas.ProviderConfig, len(bifrostProviders)+len(lazyPools))}
	for _, p := range slices.Concat(bifrostProviders, lazyPools) {
		a.configs[p] = &schemas.ProviderConfig{
			NetworkConfig: schemas.NetworkConfig{
				DefaultRequestTimeoutInSeconds: seconds(cfg.RequestTimeout),
				StreamIdleTimeoutInSeconds:     seconds(cfg.StreamIdleTimeout),
				// Sluice walks its own provider chain; a Bifrost retry would send the same
				// request twice and hide the failure from the chain and the breakers.
				MaxRetries: 0,
				// Providers are configured by the operator (in-cluster vLLM, a LAN box);
				// Bifrost's SSRF guard would refuse them.
				AllowPrivateNetwork: true,
			},
			ConcurrencyAndBufferSize: schemas.ConcurrencyAndBufferSize{
				Concurrency: cfg.Concurrency,
				BufferSize:  cfg.QueueSize,
			},
		}
		if base, ok := geminiPools[p]; ok {
			a.configs[p].NetworkConfig.BaseURL = base
		}
		if _, gemini := geminiPools[p]; (gemini || p == schemas.Bedrock || p == schemas.Vertex) && cfg.caCertPEM != "" {
			a.configs[p].NetworkConfig.CACertPEM = plainSecret(cfg.caCertPEM)
		}
		if p == schemas.Vertex && httpsProxyFromEnv() {
			// Bifrost's Vertex client (fasthttp) ignores the environment unless told,
			// but its token exchange (net/http's default client) follows HTTPS_PROXY:
			// both legs of an attempt must take the same egress route. Without a proxy
			// in the environment the pool keeps Bifrost's own dialer (the env dialer
			// would dial IPv4 only).
			a.configs[p].ProxyConfig = &schemas.ProxyConfig{Type: schemas.EnvProxy}
		}
		if p == geminiHTTP {
			a.configs[p].CustomProviderConfig = &schemas.CustomProviderConfig{BaseProviderType: schemas.Gemini}
		}
	}
	return a
}

func (a *account) GetConfiguredProviders() ([]schemas.ModelProvider, error) {
	return bifrostProviders, nil
}

// GetKeysForProvider runs on every attempt, so it only reads the context. Do sets the
// same key as BifrostContextKeyDirectKey, which Bifrost prefers; this is the fallback for
// any code path that asks the account instead.
func (a *account) GetKeysForProvider(ctx context.Context, _ schemas.ModelProvider) ([]schemas.Key, error) {
	if k, ok := ctx.Value(ctxKeyCredential{}).(schemas.Key); ok {
		return []schemas.Key{k}, nil
	}
	return nil, errors.New("translate: no credential in request context")
}

func (a *account) GetConfigForProvider(p schemas.ModelProvider) (*schemas.ProviderConfig, error) {
	c, ok := a.configs[p]
	if !ok {
		return nil, fmt.Errorf("translate: provider %q not configured", p)
	}
	cp := *c // Bifrost writes defaults into the config it is given
	if c.ProxyConfig != nil {
		pc := *c.ProxyConfig
		cp.ProxyConfig = &pc
	}
	if c.CustomProviderConfig != nil {
		cpc := *c.CustomProviderConfig // and its provider key into this one
		cp.CustomProviderConfig = &cpc
	}
	return &cp, nil
}

// credential builds the per-attempt key. The SecretVar is filled in directly:
// schemas.NewSecretVar treats values starting with "env." or "vault." (or JSON objects) as
// references and would resolve them from the dispatcher's environment.
func credential(providerID, apiKey string) schemas.Key {
	return schemas.Key{
		ID:     providerID,
		Name:   providerID,
		Value:  schemas.SecretVar{Val: apiKey, SecretType: schemas.SecretTypePlainText},
		Models: schemas.WhiteList{"*"},
		Weight: 1,
	}
}

// httpsProxyFromEnv reports whether the environment names a proxy for https requests, as
// net/http.ProxyFromEnvironment reads it.
func httpsProxyFromEnv() bool {
	return os.Getenv("HTTPS_PROXY") != "" || os.Getenv("https_proxy") != ""
}

func seconds(d time.Duration) int {
	s := int(d.Seconds())
	if s < 1 {
		s = 1
	}
	return s
}

// slogLogger adapts slog to Bifrost's printf-style logger. Bifrost logs at Info and Debug
// for routine events; those go to Debug so a healthy gateway stays quiet.
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) logf(level slog.Level, msg string, args []any) {
	if !s.l.Enabled(context.Background(), level) {
		return
	}
	if len(args) > 0 {
		msg = fmt.Sprintf(msg, args...)
	}
	s.l.Log(context.Background(), level, msg, "component", "bifrost")
}

func (s slogLogger) Debug(msg string, args ...any) { s.logf(slog.LevelDebug, msg, args) }
func (s slogLogger) Info(msg string, args ...any)  { s.logf(slog.LevelDebug, msg, args) }
func (s slogLogger) Warn(msg string, args ...any)  { s.logf(slog.LevelWarn, msg, args) }
func (s slogLogger) Error(msg string, args ...any) { s.logf(slog.LevelError, msg, args) }

// Fatal must not exit the dispatcher because a library thinks so.
func (s slogLogger) Fatal(msg string, args ...any)        { s.logf(slog.LevelError, msg, args) }
func (slogLogger) SetLevel(schemas.LogLevel)              {}
func (slogLogger) SetOutputType(schemas.LoggerOutputType) {}
func (slogLogger) LogHTTPRequest(schemas.LogLevel, string) schemas.LogEventBuilder {
	return schemas.NoopLogEvent
}
