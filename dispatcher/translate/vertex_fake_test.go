package translate

// The fake Vertex AI API and Google's fake OAuth token endpoint. Bifrost sends Vertex
// attempts to https://{region}-aiplatform.googleapis.com (aiplatform.googleapis.com for
// "global") and exchanges service-account keys at https://oauth2.googleapis.com/token,
// whatever the configuration, so both are reached through the test CONNECT proxy
// (cloud_fake_test.go) as https servers with the test certificate.

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// vertexRegions are the Vertex locations the test certificate covers.
var vertexRegions = []string{"us-east5", "europe-west4", "global"}

func vertexHost(region string) string {
	if region == "global" {
		return "aiplatform.googleapis.com"
	}
	return region + "-aiplatform.googleapis.com"
}

// googleTokenHost serves Google's OAuth 2.0 token endpoint.
const googleTokenHost = "oauth2.googleapis.com"

// vertexHosts are the host names of the Vertex fakes, for the test certificate.
func vertexHosts() []string {
	hosts := []string{googleTokenHost}
	for _, r := range vertexRegions {
		hosts = append(hosts, vertexHost(r))
	}
	return hosts
}

// The tests' service accounts: one RSA key, a project, and a fresh client_email per
// credential document (see testServiceAccount).
const (
	testProject  = "sluice-vertex-test"
	testSAKeyID  = "5a1ce0c0ffee5a1ce0c0ffee5a1ce0c0ffee5a1c"
	tokenURL     = "https://oauth2.googleapis.com/token"
	cloudScope   = "https://www.googleapis.com/auth/cloud-platform"
	jwtGrantType = "urn:ietf:params:oauth:grant-type:jwt-bearer"
)

var (
	testSAKey = sync.OnceValue(func() *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		return k
	})
	// saSerial and saRun make every credential document of the process unique: Bifrost
	// caches a token source per document for the process's life, so a test that counts
	// token exchanges needs a document no earlier test (or run, with -count) has used.
	saSerial atomic.Int64
	saRun    = func() string {
		var b [4]byte
		_, _ = rand.Read(b[:])
		return hex.EncodeToString(b[:])
	}()
)

// testSAKeyPEM is the private key as a service-account document holds it (PKCS #8).
func testSAKeyPEM() string {
	der, err := x509.MarshalPKCS8PrivateKey(testSAKey())
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// testServiceAccount returns a new service-account key document, shaped as Google issues
// them, and its client_email.
func testServiceAccount() (doc, email string) {
	email = fmt.Sprintf("sluice-%s-%d@%s.iam.gserviceaccount.com", saRun, saSerial.Add(1), testProject)
	b, _ := json.Marshal(map[string]string{
		"type": "service_account", "project_id": testProject, "private_key_id": testSAKeyID,
		"private_key": testSAKeyPEM(), "client_email": email, "client_id": "109876543210987654321",
		"auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": tokenURL,
		"auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
		"client_x509_cert_url":        "https://www.googleapis.com/robot/v1/metadata/x509/" + url.PathEscape(email),
		"universe_domain":             "googleapis.com",
	})
	return string(b), email
}

// testKeyFragment is a piece of the private key's PEM body, which must never show.
func testKeyFragment() string {
	body := strings.Split(testSAKeyPEM(), "\n")[5]
	return body[:40]
}

// tokenExchange is one JWT-bearer grant the fake token endpoint verified.
type tokenExchange struct {
	Email string
	Token string // the access token issued, "" when the grant was refused
}

// fakeGoogleToken is Google's OAuth 2.0 token endpoint for service accounts: it accepts a
// POST of grant_type=jwt-bearer with an RS256 assertion signed by the test key, for the
// cloud-platform scope, issued by a service account to this endpoint, and answers with a
// new access token. A grant breaking a rule fails the test and gets Google's 400. With
// refuse set, every grant gets that answer instead of a token.
type fakeGoogleToken struct {
	*httptest.Server
	t *testing.T

	mu        sync.Mutex
	exchanges []tokenExchange
	tokens    map[string]string // access token → client_email
	expiresIn int               // seconds; default 3599
	refuse    http.HandlerFunc
}

func newFakeGoogleToken(t *testing.T) *fakeGoogleToken {
	t.Helper()
	f := &fakeGoogleToken{t: t, tokens: map[string]string{}}
	f.Server = httptest.NewUnstartedServer(f)
	f.TLS = &tls.Config{Certificates: []tls.Certificate{testPKI.cert}, MinVersion: tls.VersionTLS12}
	f.StartTLS()
	t.Cleanup(f.Close)
	testProxy.route(t, googleTokenHost, f.Listener.Addr().String())
	return f
}

// exchangesFor counts the grants of the service account.
func (f *fakeGoogleToken) exchangesFor(email string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, x := range f.exchanges {
		if x.Email == email {
			n++
		}
	}
	return n
}

func (f *fakeGoogleToken) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.exchanges)
}

// owner returns the service account an access token was issued to.
func (f *fakeGoogleToken) owner(token string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.tokens[token]
	return e, ok
}

// issued returns every access token issued so far.
func (f *fakeGoogleToken) issued() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for tok := range f.tokens {
		out = append(out, tok)
	}
	return out
}

func (f *fakeGoogleToken) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	grantError := func(desc string) {
		f.t.Errorf("fake token endpoint: %s", desc)
		jsonReply(http.StatusBadRequest, fmt.Sprintf(`{"error":"invalid_grant","error_description":%q}`, desc))(w, r)
	}
	if r.Method != http.MethodPost || r.URL.Path != "/token" || r.Host != googleTokenHost {
		grantError(fmt.Sprintf("%s %s (Host %s) is not a token request", r.Method, r.URL, r.Host))
		return
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != jwtGrantType {
		grantError(fmt.Sprintf("grant_type %q", r.PostForm.Get("grant_type")))
		return
	}
	claims, err := verifyAssertion(r.PostForm.Get("assertion"))
	if err != nil {
		grantError(err.Error())
		return
	}
	x := tokenExchange{Email: claims.Iss}
	f.mu.Lock()
	refuse := f.refuse
	if refuse == nil {
		var b [16]byte
		_, _ = rand.Read(b[:])
		x.Token = "ya29.c.sluice-test-" + hex.EncodeToString(b[:])
		f.tokens[x.Token] = claims.Iss
	}
	f.exchanges = append(f.exchanges, x)
	expires := f.expiresIn
	f.mu.Unlock()
	if refuse != nil {
		refuse(w, r)
		return
	}
	if expires == 0 {
		expires = 3599
	}
	jsonReply(http.StatusOK, fmt.Sprintf(`{"access_token":%q,"expires_in":%d,"token_type":"Bearer"}`, x.Token, expires))(w, r)
}

// jwtClaims are the claims of a service account's JWT-bearer assertion.
type jwtClaims struct {
	Iss   string `json:"iss"`
	Scope string `json:"scope"`
	Aud   string `json:"aud"`
	Iat   int64  `json:"iat"`
	Exp   int64  `json:"exp"`
}

// verifyAssertion checks an assertion as Google does: RS256 with the key the header's kid
// names, audience the token endpoint, the cloud-platform scope, an hour at most, issued
// now.
func verifyAssertion(jwt string) (jwtClaims, error) {
	var c jwtClaims
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return c, errors.New("assertion is not a JWS")
	}
	var hdr struct{ Alg, Typ, Kid string }
	if err := decodeSegment(parts[0], &hdr); err != nil || hdr.Alg != "RS256" || hdr.Kid != testSAKeyID {
		return c, fmt.Errorf("assertion header %+v (%v)", hdr, err)
	}
	if err := decodeSegment(parts[1], &c); err != nil {
		return c, fmt.Errorf("assertion claims: %v", err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return c, errors.New("assertion signature is not base64url")
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(&testSAKey().PublicKey, crypto.SHA256, digest[:], sig); err != nil {
		return c, errors.New("assertion signature does not verify")
	}
	now := time.Now().Unix()
	switch {
	case c.Aud != tokenURL:
		return c, fmt.Errorf("assertion audience %q", c.Aud)
	case !strings.Contains(" "+c.Scope+" ", " "+cloudScope+" "):
		return c, fmt.Errorf("assertion scope %q", c.Scope)
	case !strings.HasSuffix(c.Iss, ".iam.gserviceaccount.com"):
		return c, fmt.Errorf("assertion issuer %q", c.Iss)
	case c.Iat < now-60 || c.Iat > now+60 || c.Exp <= c.Iat || c.Exp-c.Iat > 3600:
		return c, fmt.Errorf("assertion iat %d exp %d at %d", c.Iat, c.Exp, now)
	}
	return c, nil
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// vertexCall is one request as the fake Vertex API saw it.
type vertexCall struct {
	Project, Location string
	Publisher         string // anthropic or google
	Model             string
	Method            string // rawPredict, streamRawPredict, generateContent, streamGenerateContent
	Stream            bool
	Host              string
	Account           string // the service account the bearer token was issued to
	Query             url.Values
	Header            http.Header
	Body              map[string]any
	Raw               []byte
}

// fakeVertex is a scripted Vertex AI API for one location, behind the test proxy. It
// enforces what every publisher-model prediction must carry, as Vertex does: POST to
// /v1/projects/{project}/locations/{location}/publishers/{anthropic|google}/models/{model}
// with the method of the publisher (rawPredict, streamRawPredict; generateContent,
// streamGenerateContent with alt=sse), the location's host and the location in the path,
// the tests' project, a bearer token the fake token endpoint issued (else Google's 401)
// and no API key; for Claude a Messages body for Vertex (checkVertexClaude), for Gemini a
// generateContent body (checkGenerateContent). A request breaking a rule fails the test
// and gets Google's error. Anything else is answered by reply.
type fakeVertex struct {
	*httptest.Server
	t      *testing.T
	region string
	tokens *fakeGoogleToken

	mu    sync.Mutex
	calls []vertexCall
	reply http.HandlerFunc
}

var vertexPathRE = regexp.MustCompile(`^/v1/projects/([^/]+)/locations/([^/]+)/publishers/(anthropic|google)/models/([^/:]+):(rawPredict|streamRawPredict|generateContent|streamGenerateContent)$`)

func newFakeVertex(t *testing.T, region string, tokens *fakeGoogleToken, reply http.HandlerFunc) *fakeVertex {
	t.Helper()
	f := &fakeVertex{t: t, region: region, tokens: tokens, reply: reply}
	f.Server = httptest.NewUnstartedServer(f)
	f.TLS = &tls.Config{Certificates: []tls.Certificate{testPKI.cert}, MinVersion: tls.VersionTLS12}
	f.StartTLS()
	t.Cleanup(f.Close)
	testProxy.route(t, vertexHost(region), f.Listener.Addr().String())
	return f
}

func (f *fakeVertex) setReply(h http.HandlerFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reply = h
}

func (f *fakeVertex) last(t *testing.T) vertexCall {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		t.Fatal("the fake Vertex API received no request")
	}
	return f.calls[len(f.calls)-1]
}

func (f *fakeVertex) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func (f *fakeVertex) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	call := vertexCall{Host: r.Host, Query: r.URL.Query(), Header: r.Header.Clone(), Raw: raw}
	_ = json.Unmarshal(raw, &call.Body)
	m := vertexPathRE.FindStringSubmatch(r.URL.Path)
	if m != nil {
		call.Project, call.Location, call.Publisher, call.Model, call.Method = m[1], m[2], m[3], m[4], m[5]
		call.Stream = strings.HasPrefix(call.Method, "stream")
	}
	tok, bearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	account, known := f.tokens.owner(tok)
	call.Account = account
	f.mu.Lock()
	f.calls = append(f.calls, call)
	reply := f.reply
	f.mu.Unlock()

	if r.Method != http.MethodPost || m == nil || r.Host != vertexHost(f.region) || call.Location != f.region ||
		call.Project != testProject || (call.Publisher == "anthropic") != strings.HasSuffix(strings.ToLower(call.Method), "rawpredict") {
		f.t.Errorf("fake Vertex: %s %s (Host %s) is not a prediction in %s/%s", r.Method, r.URL, r.Host, testProject, f.region)
		geminiError(http.StatusNotFound, "NOT_FOUND", "Not found.")(w, r)
		return
	}
	if call.Query.Has("key") || r.Header.Get("x-goog-api-key") != "" {
		f.t.Errorf("fake Vertex: an API key in %s", r.URL)
	}
	if !bearer || !known {
		geminiError(http.StatusUnauthorized, "UNAUTHENTICATED",
			"Request had invalid authentication credentials. Expected OAuth 2 access token.")(w, r)
		return
	}
	var err error
	if call.Publisher == "anthropic" {
		err = checkVertexClaude(call.Body, call.Stream)
	} else {
		if call.Stream != (call.Query.Get("alt") == "sse") {
			f.t.Errorf("fake Vertex: stream %v with alt=%q", call.Stream, call.Query.Get("alt"))
		}
		err = checkGenerateContent(call.Body)
	}
	if err != nil {
		f.t.Errorf("fake Vertex: %v: %s", err, raw)
		geminiError(http.StatusBadRequest, "INVALID_ARGUMENT", err.Error())(w, r)
		return
	}
	reply(w, r)
}

// checkVertexClaude applies the rules of a Claude request on Vertex the lane must never
// break: anthropic_version vertex-2023-10-16, no model (it is in the URL), stream only on
// streamRawPredict, max_tokens, messages that start with the user and alternate, tool
// results answering a tool use of the turn before.
func checkVertexClaude(b map[string]any, stream bool) error {
	if b["anthropic_version"] != "vertex-2023-10-16" {
		return fmt.Errorf("anthropic_version %v", b["anthropic_version"])
	}
	if _, ok := b["model"]; ok {
		return errors.New("model: Extra inputs are not permitted")
	}
	if s, _ := b["stream"].(bool); s != stream {
		return fmt.Errorf("stream %v on a %v call", b["stream"], stream)
	}
	if mt, _ := b["max_tokens"].(float64); mt <= 0 {
		return errors.New("max_tokens: Field required")
	}
	msgs, _ := b["messages"].([]any)
	if len(msgs) == 0 {
		return errors.New("messages: at least one message is required")
	}
	uses := map[string]bool{}
	for i, m := range msgs {
		want := "user"
		if i%2 == 1 {
			want = "assistant"
		}
		if get(m, "role") != want {
			return fmt.Errorf("messages.%d.role: roles must alternate between user and assistant", i)
		}
		blocks, ok := get(m, "content").([]any)
		if !ok {
			if s, _ := get(m, "content").(string); s == "" {
				return fmt.Errorf("messages.%d.content is empty", i)
			}
			continue
		}
		for j, blk := range blocks {
			switch get(blk, "type") {
			case "tool_use":
				uses[get(blk, "id").(string)] = true
			case "tool_result":
				if id, _ := get(blk, "tool_use_id").(string); !uses[id] {
					return fmt.Errorf("messages.%d.content.%d: unexpected tool_use_id %q", i, j, id)
				}
			case "text":
				if s, _ := get(blk, "text").(string); s == "" {
					return fmt.Errorf("messages.%d.content.%d: text content blocks must be non-empty", i, j)
				}
			}
		}
	}
	return nil
}

// anthropicErrorReply answers with Anthropic's error envelope, as Claude on Vertex does
// for errors of the model server (overloaded_error).
func anthropicErrorReply(status int, typ, message string) http.HandlerFunc {
	return jsonReply(status, fmt.Sprintf(`{"type":"error","error":{"type":%q,"message":%q}}`, typ, message))
}

// vertexRequest is an attempt at a Vertex provider in region with the credential, for model.
func vertexRequest(format wire.Format, ep wire.Endpoint, region, credential, model string, stream bool, body string) *attempt.Request {
	req := request(format, config.ProviderVertex, "", stream, body)
	req.Endpoint = ep
	req.Provider.ID = "vertex-" + region
	req.Provider.Region = region
	req.Provider.APIKey = credential
	req.Model = model
	return req
}

// The model IDs of the tests' attempts, as Vertex names them.
const (
	vertexClaude = "claude-sonnet-4@20250514"
	vertexGemini = "gemini-2.5-flash"
)
