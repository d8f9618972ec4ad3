package translate

// Google Vertex AI as a provider of the lane, for the two model families Bifrost 1.7.15's
// Vertex provider serves natively: Claude (publishers/anthropic, :rawPredict and
// :streamRawPredict with Anthropic's Messages body and SSE) and Gemini (publishers/google,
// :generateContent and :streamGenerateContent?alt=sse with Gemini's body). Bifrost picks the
// family from the model name (schemas.ResolveFamily: "claude" or "gemini" in it); other
// Model Garden families (Mistral, Llama and the OpenAI-compatible endpoint) are refused by
// vertexKey, untested here. All three client formats go through Bifrost's chat schema,
// Responses clients as for Bedrock (doGeminiResponses), with one exception: an Anthropic
// Messages client of a Claude model is sent its own body (parseVertexClaudeMessages).
//
// Where the attempt goes: Bifrost builds https://{region}-aiplatform.googleapis.com (or
// aiplatform.googleapis.com for "global", aiplatform.{us,eu}.rep.googleapis.com for the
// multi-region pools) and /v1/projects/{project}/locations/{region}/… itself from the key
// and ignores any base URL. Project, region and credential travel per attempt in the key
// (vertexKey), so one Vertex pool serves every Vertex provider.
//
// Credentials: Bifrost exchanges a service-account key for an OAuth access token itself
// (golang.org/x/oauth2/google: a signed JWT posted to the key's token_uri,
// https://oauth2.googleapis.com/token), caches the token source per credential document for
// the life of the process, and sends "Authorization: Bearer". The exchange goes through
// net/http's default client, which follows HTTPS_PROXY; the Vertex pool's own client is made
// to follow it too (see newAccount), so both legs of an attempt take the same egress route.
//
// Usage: the Claude family's is Anthropic's, with Bifrost's folding of cache reads and
// writes into PromptTokens as for an Anthropic provider (usageOf); the Gemini family's is
// Gemini's usageMetadata as for a Gemini provider (gemini.go). The Vertex tests pin both
// against raw figures.

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"regexp"
	"strings"

	"github.com/maximhq/bifrost/core/schemas"

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// pickVertex returns the direction that serves req on a Vertex provider.
func pickVertex(req *attempt.Request) (direction, bool) {
	d := direction{upstream: schemas.Vertex, key: vertexKey}
	claude := vertexFamily(req.Model) == schemas.ModelFamilyAnthropic
	if claude {
		d.adapt = func() func(*schemas.BifrostChatResponse) { return func(*schemas.BifrostChatResponse) {} }
	} else {
		d.adapt = geminiCallIDs
	}
	switch {
	case req.ClientFormat == wire.OpenAI && req.Endpoint == wire.ChatCompletions:
		d.parse, d.render, d.newStream = parseOpenAIChat, renderOpenAIChat, newOpenAIStream
	case req.ClientFormat == wire.Anthropic && req.Endpoint == wire.Messages:
		d.parse, d.render, d.newStream = parseAnthropicMessages, renderAnthropicMessage, newAnthropicStream
		if claude {
			d.parse = parseVertexClaudeMessages
		}
	case req.ClientFormat == wire.OpenAI && req.Endpoint == wire.Responses:
		d.run = (*Engine).doGeminiResponses
	default:
		return direction{}, false
	}
	return d, true
}

// vertexFamily is the model family Bifrost's Vertex provider will treat model as.
func vertexFamily(model string) schemas.ModelFamily { return schemas.ResolveFamily(nil, model) }

// parseVertexClaudeMessages parses an Anthropic Messages request for a Claude model on
// Vertex and has Bifrost send the client's own body rather than one rebuilt from the chat
// schema: cache_control breakpoints, thinking blocks with their signatures, document and
// citation fields and anything else the round trip through the chat schema would lose
// arrive as the client wrote them. Bifrost edits that body in place for Vertex
// (anthropic.BuildAnthropicChatRequestBody): it removes "model" (the model is in the URL),
// adds "anthropic_version": "vertex-2023-10-16", sets or removes "stream", supplies
// "max_tokens" when absent, moves anthropic-beta flags into "anthropic_beta", remaps tool
// versions and drops fields Vertex rejects. The parsed request still drives the rest of
// the attempt (the model, streaming).
func parseVertexClaudeMessages(bctx *schemas.BifrostContext, body []byte) (*schemas.BifrostChatRequest, clientOptions, error) {
	breq, opts, err := parseAnthropicMessages(bctx, body)
	if err != nil {
		return nil, opts, err
	}
	breq.RawRequestBody = body
	bctx.SetValue(schemas.BifrostContextKeyUseRawRequestBody, true)
	return breq, opts, nil
}

// vertexServiceAccount is the part of a Google service-account key document the lane
// checks; Bifrost reads the document itself.
type vertexServiceAccount struct {
	Type        string `json:"type"`
	ProjectID   string `json:"project_id"`
	PrivateKey  string `json:"private_key"`
	ClientEmail string `json:"client_email"`
	TokenURI    string `json:"token_uri"`
}

var (
	// vertexRegionRE matches a Vertex location: a region (us-east5), "global", or a
	// multi-region pool ("us", "eu"). Bifrost puts it into a host name.
	vertexRegionRE = regexp.MustCompile(`^[a-z]{2,}(-[a-z0-9]+)*$`)
	// vertexProjectRE matches a Google Cloud project ID, optionally domain-scoped
	// ("example.com:my-project"). Bifrost puts it into the URL path.
	vertexProjectRE = regexp.MustCompile(`^([a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$`)
	// vertexModelRE matches a publisher model ID (claude-sonnet-4@20250514,
	// gemini-2.5-flash). Bifrost puts it into the URL path unescaped, so nothing that
	// could leave the path segment (a slash, a colon, a query) may be in it.
	vertexModelRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]*$`)
)

// errVertexMisconfigured is the cause of every refusal of vertexKey.
var errVertexMisconfigured = errors.New("translate: vertex provider misconfigured")

// vertexKey is the Bifrost key of an attempt at a Vertex provider: its credential
// (attempt.Provider.APIKey), region (attempt.Provider.Region) and project.
//
// The credential must be a service-account key document ("type": "service_account", with
// client_email and an RSA private_key; token_uri, when present, over https). Other Google
// credential types are refused: an empty credential would make Bifrost use the
// dispatcher's own identity (Application Default Credentials: the environment, gcloud's
// files, the metadata server); "external_account" documents name files, URLs or programs
// of the dispatcher's host to read the identity from; a bare OAuth access token cannot be
// handed to Bifrost's Vertex provider (it only exchanges documents) and would expire within
// the hour anyway.
//
// The project is the provider's (provider_config.project), else the document's project_id:
// Google allows a key of one project to call Vertex in another.
//
// Refusals are the operator's to fix and another provider may serve the request: a
// retryable 500, like bedrockKey's, for a model of a family the lane does not serve on
// Vertex or a model ID that could not be a path segment too.
func vertexKey(req *attempt.Request) (schemas.Key, failure, error) {
	misconfigured := func(why string) (schemas.Key, failure, error) {
		return schemas.Key{}, failure{status: http.StatusInternalServerError, code: "provider_misconfigured",
				message: "The provider for this model is misconfigured.", retryable: true},
			errors.Join(errVertexMisconfigured, errors.New(why))
	}
	p := req.Provider
	if !vertexRegionRE.MatchString(p.Region) {
		return misconfigured("no valid region (provider_config.region)")
	}
	if !vertexModelRE.MatchString(req.Model) {
		return misconfigured("the model is not a Vertex publisher model ID")
	}
	if f := vertexFamily(req.Model); f != schemas.ModelFamilyAnthropic && f != schemas.ModelFamilyGemini {
		return misconfigured("only Claude and Gemini models are served on Vertex")
	}
	doc := strings.TrimSpace(p.APIKey)
	if doc == "" || doc[0] != '{' {
		return misconfigured("the credential is not a service-account key document")
	}
	var sa vertexServiceAccount
	if err := json.Unmarshal([]byte(doc), &sa); err != nil {
		// The error may quote the document: it is not kept.
		return misconfigured("the credential document is not valid JSON")
	}
	switch {
	case sa.Type != "service_account":
		return misconfigured("the credential document is not a service-account key")
	case sa.ClientEmail == "":
		return misconfigured("the service-account key lacks client_email")
	case !rsaKeyPEM(sa.PrivateKey):
		return misconfigured("the service-account key's private_key is not an RSA key in PEM")
	case sa.TokenURI != "" && !strings.HasPrefix(sa.TokenURI, "https://"):
		return misconfigured("the service-account key's token_uri is not https")
	}
	project := p.Project
	if project == "" {
		project = sa.ProjectID
	}
	if !vertexProjectRE.MatchString(project) {
		return misconfigured("no valid project (provider_config.project, or the key's project_id)")
	}
	key := credential(p.ID, "")
	key.VertexKeyConfig = &schemas.VertexKeyConfig{
		ProjectID:       *plainSecret(project),
		Region:          *plainSecret(p.Region),
		AuthCredentials: *plainSecret(doc),
	}
	return key, failure{}, nil
}

// rsaKeyPEM reports whether s holds an RSA private key in PEM (PKCS #8 or PKCS #1), as
// golang.org/x/oauth2 requires; checked here so that a broken key is refused before
// Bifrost's parse errors, which are not the lane's to vet, could describe it.
func rsaKeyPEM(s string) bool {
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		return false
	}
	if k, err := x509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
		_, ok := k.(*rsa.PrivateKey)
		return ok
	}
	_, err := x509.ParsePKCS1PrivateKey(b.Bytes)
	return err == nil
}
