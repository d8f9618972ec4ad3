package translate

// The test harness of the cloud providers whose hosts Bifrost fixes (Bedrock, Vertex AI):
// their fakes cannot be given as a base URL, so they are reached the way an egress proxy
// would reach the real ones. TestMain points HTTPS_PROXY at connectProxy, an HTTP CONNECT
// proxy on loopback, before anything in the process reads it (net/http reads it once;
// Bifrost's Bedrock client and Google's token exchange use net/http, and the lane gives
// the Vertex pool the environment's proxy, see newAccount). The proxy splices each
// CONNECT to a registered host:443 to the fake serving it: an https server whose
// certificate, for every host a fake may serve, is signed by a CA made here. The engine's
// pools trust it through Config.caCertPEM; net/http's default transport, which Google's
// token exchange uses, is made to trust it too. A CONNECT to any other host is refused and
// recorded, and fails the test that caused it.

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// testProxy is the process's HTTPS proxy; testPKI signs the fakes' certificate.
var (
	testProxy *connectProxy
	testPKI   *cloudPKI
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	var err error
	if testPKI, err = newCloudPKI(slices.Concat(bedrockHosts(), vertexHosts())); err != nil {
		fmt.Fprintln(os.Stderr, "test PKI:", err)
		return 1
	}
	if testProxy, err = startConnectProxy(); err != nil {
		fmt.Fprintln(os.Stderr, "test proxy:", err)
		return 1
	}
	defer testProxy.close()
	// Loopback destinations (every other fake) are never proxied by net/http.
	for _, k := range []string{"https_proxy", "http_proxy", "HTTP_PROXY", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"} {
		_ = os.Unsetenv(k)
	}
	_ = os.Setenv("HTTPS_PROXY", "http://"+testProxy.addr())
	// Google's token exchange posts with http.DefaultClient.
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	roots.AppendCertsFromPEM([]byte(testPKI.caPEM))
	http.DefaultTransport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	// The AWS SDK, which Bifrost loads to sign each request, must not read the machine's
	// AWS profile or credentials; Google's libraries must not find the machine's.
	dir, err := os.MkdirTemp("", "cloud-credentials")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	for _, k := range []string{"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
		"AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CA_BUNDLE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
		"GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CONFIG"} {
		_ = os.Unsetenv(k)
	}
	_ = os.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	_ = os.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	_ = os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	_ = os.Setenv("CLOUDSDK_CONFIG", dir)
	return m.Run()
}

// cloudPKI is a test CA and a server certificate it signed for every fake's host.
type cloudPKI struct {
	caPEM string
	cert  tls.Certificate
}

func newCloudPKI(hosts []string) (*cloudPKI, error) {
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
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: hosts[0]}, DNSNames: hosts,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	return &cloudPKI{
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
		t.Fatalf("proxy: %s is already routed (tests of cloud providers must not run in parallel)", target)
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

// newCloudEngine is newEngine trusting the test CA.
func newCloudEngine(t *testing.T) *Engine {
	t.Helper()
	e, err := New(t.Context(), Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), RequestTimeout: 10 * time.Second,
		StreamIdleTimeout: 5 * time.Second, Concurrency: 4, QueueSize: 64, caCertPEM: testPKI.caPEM})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}
