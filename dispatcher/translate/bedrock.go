package translate

// Amazon Bedrock as a provider of the lane. All three client formats go through Bifrost's
// Bedrock chat path, which for Anthropic Claude, Amazon Nova, Llama, Mistral and the other
// Converse models is the Converse API (POST /model/{modelId}/converse) and ConverseStream
// (/model/{modelId}/converse-stream, AWS event-stream framing), signed with SigV4 or sent
// with a Bedrock API key as a bearer token. Its output is Bifrost's OpenAI-shaped chat
// schema, so the chat and Messages renderers serve it unchanged, and Responses clients go
// through the chat schema as for Gemini (doGeminiResponses, which holds nothing specific to
// Gemini). Bifrost sends OpenAI-family models (gpt-oss, gpt-5) and Gemma 4 to Bedrock
// Mantle instead (bedrock-mantle.{region}.api.aws, over another HTTP client); that path is
// not covered by this package's tests.
//
// Where the attempt goes: Bifrost builds https://bedrock-runtime.{region}.amazonaws.com
// itself and ignores any base URL, taking the region from the key (BedrockKeyConfig.Region)
// unless the model ID starts with "{region}/" (refused here, see bedrockKey). The key and
// its region travel per attempt in the request context like every other credential, so the
// one Bedrock pool serves every Bedrock provider whatever its region or account; what the
// pool fixes (timeouts, the CA set) is the same for all of them.
//
// Usage: Converse's inputTokens excludes the cache, like Anthropic's input_tokens, and
// Bifrost 1.7.15 folds cacheReadInputTokens and cacheWriteInputTokens into PromptTokens
// (ToBifrostChatResponse; normalizeCachedUsage on a stream), so usageOf reports
// InputTokens = inputTokens + cacheRead + cacheWrite, with CacheReadTokens = cacheRead and
// CacheCreationTokens = cacheWrite as parts of it, and OutputTokens = outputTokens. The
// Bedrock tests pin this against raw figures.

import (
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strings"

	"github.com/maximhq/bifrost/core/schemas"

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// pickBedrock returns the direction that serves req on a Bedrock provider.
func pickBedrock(req *attempt.Request) (direction, bool) {
	d := direction{upstream: schemas.Bedrock, key: bedrockKey}
	switch {
	case req.ClientFormat == wire.OpenAI && req.Endpoint == wire.ChatCompletions:
		d.parse, d.render, d.newStream = parseOpenAIChat, renderOpenAIChat, newOpenAIStream
	case req.ClientFormat == wire.Anthropic && req.Endpoint == wire.Messages:
		d.parse, d.render, d.newStream = parseAnthropicMessages, renderAnthropicMessage, newAnthropicStream
	case req.ClientFormat == wire.OpenAI && req.Endpoint == wire.Responses:
		d.run = (*Engine).doGeminiResponses
		d.adapt = func() func(*schemas.BifrostChatResponse) { return func(*schemas.BifrostChatResponse) {} }
	default:
		return direction{}, false
	}
	return d, true
}

// bedrockCredentials is a Bedrock provider's credential document: an IAM access key,
// with a session token when it is temporary.
type bedrockCredentials struct {
	AccessKeyID     string `json:"access_key_id"`
	SecretAccessKey string `json:"secret_access_key"`
	SessionToken    string `json:"session_token"`
}

// awsRegionRE matches an AWS region name; it is what config.ModelProvider.Cloud accepts,
// checked again because Bifrost puts the region into a host name.
var awsRegionRE = regexp.MustCompile(`^[a-z]{2,}(-[a-z0-9]+)+$`)

// errBedrockMisconfigured is the cause of every refusal of bedrockKey.
var errBedrockMisconfigured = errors.New("translate: bedrock provider misconfigured")

// bedrockKey is the Bifrost key of an attempt at a Bedrock provider: its credential
// (attempt.Provider.APIKey) and its region (attempt.Provider.Region).
//
// The credential is either a JSON document {"access_key_id", "secret_access_key",
// "session_token"?}, which Bifrost uses to sign with SigV4, or, when it is not a JSON
// object, a Bedrock API key, sent as "Authorization: Bearer". A document without both
// access key fields is refused: Bifrost would otherwise sign with the AWS SDK's default
// credential chain, i.e. the dispatcher's own identity (environment, ~/.aws, instance
// role). An empty credential is refused for the same reason.
//
// A model ID that starts with a region ("eu-west-1/anthropic.claude-…") is refused:
// Bifrost would send the attempt to that region instead of the provider's.
func bedrockKey(req *attempt.Request) (schemas.Key, failure, error) {
	misconfigured := func(why string) (schemas.Key, failure, error) {
		return schemas.Key{}, failure{status: http.StatusInternalServerError, code: "provider_misconfigured",
				message: "The provider for this model is misconfigured.", retryable: true},
			errors.Join(errBedrockMisconfigured, errors.New(why))
	}
	p := req.Provider
	if !awsRegionRE.MatchString(p.Region) {
		return misconfigured("no valid region (provider_config.region)")
	}
	if prefix, _, ok := strings.Cut(req.Model, "/"); ok && awsRegionRE.MatchString(prefix) {
		return schemas.Key{}, failure{status: http.StatusBadRequest, code: "invalid_request_error",
				message: "The model name may not name an AWS region; the provider's region is used."},
			errors.New("translate: bedrock model names a region")
	}
	key := credential(p.ID, "")
	key.BedrockKeyConfig = &schemas.BedrockKeyConfig{Region: plainSecret(p.Region)}
	doc := strings.TrimSpace(p.APIKey)
	switch {
	case doc == "":
		return misconfigured("no credential")
	case doc[0] != '{':
		if strings.ContainsAny(doc, " \t\r\n") {
			return misconfigured("the API key holds white space")
		}
		key.Value = *plainSecret(doc)
		return key, failure{}, nil
	}
	var c bedrockCredentials
	if err := json.Unmarshal([]byte(doc), &c); err != nil {
		// The error may quote the document: it is not kept.
		return misconfigured("the credential document is not valid JSON")
	}
	if c.AccessKeyID == "" || c.SecretAccessKey == "" {
		return misconfigured("the credential document lacks access_key_id or secret_access_key")
	}
	key.BedrockKeyConfig.AccessKey = *plainSecret(c.AccessKeyID)
	key.BedrockKeyConfig.SecretKey = *plainSecret(c.SecretAccessKey)
	if c.SessionToken != "" {
		key.BedrockKeyConfig.SessionToken = plainSecret(c.SessionToken)
	}
	return key, failure{}, nil
}

// plainSecret is a SecretVar holding v as is (see credential).
func plainSecret(v string) *schemas.SecretVar {
	return &schemas.SecretVar{Val: v, SecretType: schemas.SecretTypePlainText}
}
