package translate

// The Bedrock test harness. Bifrost sends Bedrock attempts to
// https://bedrock-runtime.{region}.amazonaws.com whatever the configuration, so the fake
// Bedrock API is reached the way an egress proxy would reach AWS: Bifrost's Bedrock HTTP
// client (providers/bedrock NewBedrockProvider) takes its proxy from the environment
// (http.ProxyFromEnvironment; it ignores ProviderConfig.ProxyConfig, which only its Mantle
// client reads), so TestMain points HTTPS_PROXY at connectProxy, an HTTP CONNECT proxy on
// loopback, before anything in the process reads it (net/http reads it once). The proxy
// splices each CONNECT to bedrock-runtime.{region}.amazonaws.com:443 to the fake
// registered for that region: an https server whose certificate, for those host names, is
// signed by a CA made here, which the engine trusts through Config.caCertPEM. A CONNECT to
// any other host is refused and recorded, and fails the test that caused it.

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// bedrockRegions are the regions the test certificate covers.
var bedrockRegions = []string{"us-east-1", "eu-west-1", "ap-southeast-2"}

func bedrockHost(region string) string { return "bedrock-runtime." + region + ".amazonaws.com" }

// testProxy is the process's HTTPS proxy; testPKI signs the fakes' certificate.
var (
	testProxy *connectProxy
	testPKI   *bedrockPKI
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	var err error
	if testPKI, err = newBedrockPKI(); err != nil {
		fmt.Fprintln(os.Stderr, "bedrock test PKI:", err)
		return 1
	}
	if testProxy, err = startConnectProxy(); err != nil {
		fmt.Fprintln(os.Stderr, "bedrock test proxy:", err)
		return 1
	}
	defer testProxy.close()
	// Loopback destinations (every other fake) are never proxied by net/http.
	for _, k := range []string{"https_proxy", "http_proxy", "HTTP_PROXY", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"} {
		_ = os.Unsetenv(k)
	}
	_ = os.Setenv("HTTPS_PROXY", "http://"+testProxy.addr())
	// The AWS SDK, which Bifrost loads to sign each request, must not read the machine's
	// AWS profile or credentials.
	dir, err := os.MkdirTemp("", "bedrock-aws")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	for _, k := range []string{"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
		"AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CA_BUNDLE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"} {
		_ = os.Unsetenv(k)
	}
	_ = os.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	_ = os.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	_ = os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	return m.Run()
}

// bedrockPKI is a test CA and a server certificate it signed for every bedrockRegions host.
type bedrockPKI struct {
	caPEM string
	cert  tls.Certificate
}

func newBedrockPKI() (*bedrockPKI, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sluice test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	if ca, err = x509.ParseCertificate(caDER); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: bedrockHost(bedrockRegions[0])},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	for _, r := range bedrockRegions {
		leaf.DNSNames = append(leaf.DNSNames, bedrockHost(r))
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	return &bedrockPKI{
		caPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})),
		cert:  tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key},
	}, nil
}

// connectProxy is an HTTP proxy that serves CONNECT only, to the hosts a test registered.
type connectProxy struct {
	ln net.Listener
	wg sync.WaitGroup

	mu      sync.Mutex
	routes  map[string]string // "host:443" → the fake's address
	refused []string          // CONNECT targets without a route
	conns   map[net.Conn]bool // open client and backend connections, closed on close
	closed  bool
}

func startConnectProxy() (*connectProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &connectProxy{ln: ln, routes: map[string]string{}, conns: map[net.Conn]bool{}}
	p.wg.Go(p.serve)
	return p, nil
}

func (p *connectProxy) addr() string { return p.ln.Addr().String() }

// route sends CONNECTs to host:443 to addr until the test ends.
func (p *connectProxy) route(t *testing.T, host, addr string) {
	t.Helper()
	target := host + ":443"
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, taken := p.routes[target]; taken {
		t.Fatalf("proxy: %s is already routed (Bedrock tests must not run in parallel)", target)
	}
	p.routes[target] = addr
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		delete(p.routes, target)
		if len(p.refused) > 0 {
			t.Errorf("proxy: refused CONNECT to %v", p.refused)
			p.refused = nil
		}
	})
}

func (p *connectProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		return false
	}
	p.conns[c] = true
	return true
}

func (p *connectProxy) untrack(c net.Conn) {
	_ = c.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

func (p *connectProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			continue
		}
		p.wg.Go(func() { p.handle(c) })
	}
}

func (p *connectProxy) handle(c net.Conn) {
	defer p.untrack(c)
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	p.mu.Lock()
	backend, ok := p.routes[req.Host]
	if !ok || req.Method != http.MethodConnect {
		p.refused = append(p.refused, req.Method+" "+req.Host)
	}
	p.mu.Unlock()
	if !ok || req.Method != http.MethodConnect {
		_, _ = io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		return
	}
	b, err := net.Dial("tcp", backend)
	if err != nil {
		_, _ = io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		return
	}
	if !p.track(b) {
		return
	}
	defer p.untrack(b)
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(b, br) // br holds whatever the client sent after the CONNECT
		if tc, ok := b.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	_, _ = io.Copy(c, b)
	_ = c.Close()
	<-done
}

func (p *connectProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// newBedrockEngine is newEngine trusting the test CA.
func newBedrockEngine(t *testing.T) *Engine {
	t.Helper()
	e, err := New(t.Context(), Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), RequestTimeout: 10 * time.Second,
		StreamIdleTimeout: 5 * time.Second, Concurrency: 4, QueueSize: 64, caCertPEM: testPKI.caPEM})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
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
