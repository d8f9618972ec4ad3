package translate

// The fake Bedrock runtime API. Bifrost sends Bedrock attempts to
// https://bedrock-runtime.{region}.amazonaws.com whatever the configuration, so the fake is
// reached through the test CONNECT proxy (cloud_fake_test.go): Bifrost's Bedrock HTTP
// client (providers/bedrock NewBedrockProvider) takes its proxy from the environment
// (http.ProxyFromEnvironment; it ignores ProviderConfig.ProxyConfig, which only its Mantle
// client reads). Each region's fake is an https server for
// bedrock-runtime.{region}.amazonaws.com with the test certificate.

import (
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// bedrockRegions are the regions the test certificate covers.
var bedrockRegions = []string{"us-east-1", "eu-west-1", "ap-southeast-2"}

func bedrockHost(region string) string { return "bedrock-runtime." + region + ".amazonaws.com" }

// bedrockHosts are the host names of bedrockRegions, for the test certificate.
func bedrockHosts() []string {
	hosts := make([]string, len(bedrockRegions))
	for i, r := range bedrockRegions {
		hosts[i] = bedrockHost(r)
	}
	return hosts
}

// Test credentials. The access key ID appears in the SigV4 Authorization header; the
// secret and the bearer key must appear nowhere but where AWS expects them.
const (
	testAccessKeyID = "AKIATESTCANARY7F3A9C"
	testSecretKey   = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYcanary7f3a"
	testSession     = "IQoJb3JpZ2luX2VjEsessioncanary"
	testBearerKey   = "ABSKQmVkcm9ja0FQSUtleS1jYW5hcnk="
)

// testCredentials is the credential document of the test IAM key, with or without a
// session token.
func testCredentials(session bool) string {
	if session {
		return fmt.Sprintf(`{"access_key_id":%q,"secret_access_key":%q,"session_token":%q}`, testAccessKeyID, testSecretKey, testSession)
	}
	return fmt.Sprintf(`{"access_key_id":%q,"secret_access_key":%q}`, testAccessKeyID, testSecretKey)
}

// bedrockCall is one request as the fake Bedrock API saw it.
type bedrockCall struct {
	Model  string // the model ID in the path
	Stream bool   // converse-stream
	Host   string
	Auth   string // "sigv4:{access key ID}:{region}" or "bearer:{key}"
	Header http.Header
	Body   map[string]any
	Raw    []byte
}

// fakeBedrock is a scripted Bedrock runtime API for one region, behind the test proxy. It
// enforces what every Converse and ConverseStream request must carry, as Bedrock does:
// POST to /model/{modelId}/converse or /converse-stream, the region's host, a credential
// (a SigV4 Authorization header scoped to this region and the bedrock service, naming
// testAccessKeyID, with X-Amz-Date and, when it is used, the session token; or the bearer
// key; the signature itself is not verified), the event-stream Accept header on streams,
// and a JSON body Converse would accept (checkConverse). A request breaking a rule fails
// the test and gets Bedrock's error. Anything else is answered by reply.
type fakeBedrock struct {
	*httptest.Server
	t       *testing.T
	region  string
	session bool // the SigV4 requests must carry testSession

	mu    sync.Mutex
	calls []bedrockCall
	reply http.HandlerFunc
}

var bedrockPathRE = regexp.MustCompile(`^/model/([^/]+)/(converse|converse-stream)$`)

// sigV4RE matches a SigV4 Authorization header: credential scope, signed headers, signature.
var sigV4RE = regexp.MustCompile(`^AWS4-HMAC-SHA256 Credential=([A-Z0-9]+)/(\d{8})/([a-z0-9-]+)/([a-z-]+)/aws4_request, ` +
	`SignedHeaders=([a-z0-9;-]+), Signature=[0-9a-f]{64}$`)

func newFakeBedrock(t *testing.T, region string, reply http.HandlerFunc) *fakeBedrock {
	t.Helper()
	f := &fakeBedrock{t: t, region: region, reply: reply}
	f.Server = httptest.NewUnstartedServer(f)
	f.TLS = &tls.Config{Certificates: []tls.Certificate{testPKI.cert}, MinVersion: tls.VersionTLS12}
	f.StartTLS()
	t.Cleanup(f.Close)
	testProxy.route(t, bedrockHost(region), f.Listener.Addr().String())
	return f
}

func (f *fakeBedrock) setReply(h http.HandlerFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reply = h
}

func (f *fakeBedrock) last(t *testing.T) bedrockCall {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		t.Fatal("the fake Bedrock API received no request")
	}
	return f.calls[len(f.calls)-1]
}

func (f *fakeBedrock) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func (f *fakeBedrock) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	call := bedrockCall{Host: r.Host, Header: r.Header.Clone(), Raw: raw}
	_ = json.Unmarshal(raw, &call.Body)
	m := bedrockPathRE.FindStringSubmatch(r.URL.Path)
	if m != nil {
		call.Model, call.Stream = m[1], m[2] == "converse-stream"
	}
	authErr := f.authenticate(r, &call)
	f.mu.Lock()
	f.calls = append(f.calls, call)
	reply := f.reply
	f.mu.Unlock()

	if r.Method != http.MethodPost || m == nil || r.Host != bedrockHost(f.region) {
		f.t.Errorf("fake Bedrock: %s %s (Host %s) is not a Converse call in %s", r.Method, r.URL, r.Host, f.region)
		bedrockError(http.StatusNotFound, "ResourceNotFoundException", "Not found.")(w, r)
		return
	}
	if authErr != nil {
		bedrockError(http.StatusForbidden, "UnrecognizedClientException", "The security token included in the request is invalid.")(w, r)
		return
	}
	if call.Stream && r.Header.Get("Accept") != "application/vnd.amazon.eventstream" {
		f.t.Errorf("fake Bedrock: stream with Accept %q", r.Header.Get("Accept"))
	}
	if err := checkConverse(call.Body); err != nil {
		f.t.Errorf("fake Bedrock: %v: %s", err, raw)
		bedrockError(http.StatusBadRequest, "ValidationException", err.Error())(w, r)
		return
	}
	reply(w, r)
}

// authenticate reads the request's credential into call.Auth and reports whether Bedrock
// would accept it (signature aside).
func (f *fakeBedrock) authenticate(r *http.Request, call *bedrockCall) error {
	h := r.Header.Get("Authorization")
	if key, ok := strings.CutPrefix(h, "Bearer "); ok {
		call.Auth = "bearer:" + key
		if key != testBearerKey {
			return errors.New("unknown bearer key")
		}
		if r.Header.Get("X-Amz-Security-Token") != "" {
			return errors.New("session token with a bearer key")
		}
		return nil
	}
	m := sigV4RE.FindStringSubmatch(h)
	if m == nil {
		return fmt.Errorf("no credential: Authorization %q", h)
	}
	call.Auth = "sigv4:" + m[1] + ":" + m[3]
	switch {
	case m[1] != testAccessKeyID:
		return fmt.Errorf("unknown access key %s", m[1])
	case m[3] != f.region || m[4] != "bedrock":
		return fmt.Errorf("credential scoped to %s/%s", m[3], m[4])
	case !strings.HasPrefix(r.Header.Get("X-Amz-Date"), m[2]):
		return fmt.Errorf("X-Amz-Date %q for a %s scope", r.Header.Get("X-Amz-Date"), m[2])
	case !strings.Contains(";"+m[5]+";", ";host;") || !strings.Contains(m[5], "x-amz-date"):
		return fmt.Errorf("signed headers %s", m[5])
	}
	if tok := r.Header.Get("X-Amz-Security-Token"); tok != "" || f.session {
		if tok != testSession || !strings.Contains(m[5], "x-amz-security-token") {
			return fmt.Errorf("session token %q (signed: %s)", tok, m[5])
		}
	}
	return nil
}

// checkConverse applies Converse's request rules the lane must never break: messages
// that start with the user and alternate, each with content blocks of one kind; tool
// results that answer a tool use of the turn before; system blocks with text; tool
// specifications with a name and a JSON input schema.
func checkConverse(b map[string]any) error {
	msgs, _ := b["messages"].([]any)
	if len(msgs) == 0 {
		return errors.New("messages is empty")
	}
	uses := map[string]bool{}
	for i, m := range msgs {
		want := "user"
		if i%2 == 1 {
			want = "assistant"
		}
		if role := get(m, "role"); role != want {
			return fmt.Errorf("messages[%d].role %v: A conversation must alternate between user and assistant roles", i, role)
		}
		blocks, _ := get(m, "content").([]any)
		if len(blocks) == 0 {
			return fmt.Errorf("messages[%d] has no content", i)
		}
		for j, blk := range blocks {
			o, _ := blk.(map[string]any)
			if len(o) != 1 {
				return fmt.Errorf("messages[%d].content[%d] is not one block: %v", i, j, blk)
			}
			switch {
			case o["text"] != nil:
				if s, _ := o["text"].(string); s == "" {
					return fmt.Errorf("messages[%d].content[%d] is blank text", i, j)
				}
			case o["toolUse"] != nil:
				id, _ := get(o, "toolUse", "toolUseId").(string)
				name, _ := get(o, "toolUse", "name").(string)
				if _, ok := get(o, "toolUse", "input").(map[string]any); !ok || id == "" || name == "" || want != "assistant" {
					return fmt.Errorf("messages[%d].content[%d] toolUse %v", i, j, o)
				}
				uses[id] = true
			case o["toolResult"] != nil:
				id, _ := get(o, "toolResult", "toolUseId").(string)
				if !uses[id] || want != "user" {
					return fmt.Errorf("messages[%d].content[%d] toolResult for unknown toolUseId %q", i, j, id)
				}
				if c, _ := get(o, "toolResult", "content").([]any); len(c) == 0 {
					return fmt.Errorf("messages[%d].content[%d] toolResult without content", i, j)
				}
			case o["cachePoint"] != nil, o["image"] != nil, o["document"] != nil, o["reasoningContent"] != nil:
			default:
				return fmt.Errorf("messages[%d].content[%d] unknown block %v", i, j, o)
			}
		}
	}
	if sys, ok := b["system"]; ok {
		blocks, _ := sys.([]any)
		for i, blk := range blocks {
			if get(blk, "text") == nil && get(blk, "cachePoint") == nil {
				return fmt.Errorf("system[%d] %v", i, blk)
			}
		}
	}
	if tc, ok := b["toolConfig"]; ok {
		tools, _ := get(tc, "tools").([]any)
		if len(tools) == 0 {
			return errors.New("toolConfig without tools")
		}
		for i, tl := range tools {
			if get(tl, "cachePoint") != nil {
				continue
			}
			if name, _ := get(tl, "toolSpec", "name").(string); name == "" || get(tl, "toolSpec", "inputSchema", "json") == nil {
				return fmt.Errorf("toolConfig.tools[%d] %v", i, tl)
			}
		}
	}
	return nil
}

// converseJSON answers a Converse call.
func converseJSON(body string) http.HandlerFunc {
	return jsonReply(http.StatusOK, body, "X-Amzn-Requestid", "8f0c1e2a-0000-4000-8000-000000000001")
}

// bedrockError answers as Bedrock's REST API does: the exception name in
// X-Amzn-ErrorType, the message in the JSON body.
func bedrockError(status int, exception, message string) http.HandlerFunc {
	return jsonReply(status, fmt.Sprintf(`{"message":%q}`, message),
		"X-Amzn-Errortype", exception+":http://internal.amazon.com/coral/com.amazon.bedrock/")
}

// eventMessage encodes one AWS event-stream message: a prelude (total length, headers
// length, CRC32 of the two), string headers, the payload and the CRC32 of all before it.
func eventMessage(headers [][2]string, payload []byte) []byte {
	var hs []byte
	for _, h := range headers {
		hs = append(hs, byte(len(h[0])))
		hs = append(hs, h[0]...)
		hs = append(hs, 7) // string
		hs = binary.BigEndian.AppendUint16(hs, uint16(len(h[1])))
		hs = append(hs, h[1]...)
	}
	total := 12 + len(hs) + len(payload) + 4
	msg := binary.BigEndian.AppendUint32(nil, uint32(total))
	msg = binary.BigEndian.AppendUint32(msg, uint32(len(hs)))
	msg = binary.BigEndian.AppendUint32(msg, crc32.ChecksumIEEE(msg))
	msg = append(msg, hs...)
	msg = append(msg, payload...)
	return binary.BigEndian.AppendUint32(msg, crc32.ChecksumIEEE(msg))
}

// bedrockEvent is one ConverseStream event. Bedrock pads every payload with a "p" field of
// random length (against traffic analysis); so does the fake.
func bedrockEvent(typ, payload string) []byte {
	payload = strings.TrimSuffix(payload, "}") + `,"p":"abcdefghijklmnopqrstuvwxyzABCDEF"}`
	return eventMessage([][2]string{{":event-type", typ}, {":content-type", "application/json"}, {":message-type", "event"}}, []byte(payload))
}

// bedrockException is an exception in a ConverseStream, e.g. throttlingException.
func bedrockException(typ, message string) []byte {
	return eventMessage([][2]string{{":exception-type", typ}, {":content-type", "application/json"}, {":message-type", "exception"}},
		fmt.Appendf(nil, `{"message":%q}`, message))
}

// bedrockStream answers a ConverseStream call with the messages, flushed one by one. With
// abort set the connection is torn down after the last; cut, when positive, sends only
// that many bytes of the last message before tearing it down.
func bedrockStream(msgs [][]byte, abort bool, cut int) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/vnd.amazon.eventstream")
		w.Header().Set("X-Amzn-Requestid", "8f0c1e2a-0000-4000-8000-000000000002")
		w.WriteHeader(http.StatusOK)
		for i, m := range msgs {
			if cut > 0 && i == len(msgs)-1 {
				m = m[:cut]
			}
			_, _ = w.Write(m)
			w.(http.Flusher).Flush()
		}
		if abort || cut > 0 {
			panic(http.ErrAbortHandler)
		}
	}
}

// bedrockRequest is an attempt at a Bedrock provider in region, with the credential.
func bedrockRequest(format wire.Format, ep wire.Endpoint, region, credential string, stream bool, body string) *attempt.Request {
	req := request(format, config.ProviderBedrock, "", stream, body)
	req.Endpoint = ep
	req.Provider.ID = "bedrock-" + region
	req.Provider.Region = region
	req.Provider.APIKey = credential
	req.Model = bedrockClaude
	return req
}

// bedrockClaude is the model ID of the tests' attempts.
const bedrockClaude = "anthropic.claude-sonnet-4-20250514-v1:0"
