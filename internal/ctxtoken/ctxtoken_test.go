package ctxtoken

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var (
	testKey  = []byte("0123456789abcdef0123456789abcdef")
	otherKey = []byte("fedcba9876543210fedcba9876543210")
)

func newPair(t *testing.T, key []byte) (*Signer, *Verifier) {
	t.Helper()
	s, err := NewSigner(key)
	if err != nil {
		t.Fatalf("NewSigner: %v", err)
	}
	v, err := NewVerifier(key)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return s, v
}

func fullClaims() *Claims {
	return &Claims{
		RequestID: "rid-1", KeyID: "vk_01", OrgID: "org", TeamID: "team", ProjectID: "proj",
		PrincipalID: "alice", Model: "fast", Format: "openai", Endpoint: "chat_completions",
		Stream: true, Chain: []Attempt{{Provider: "oa", Model: "gpt-4o"}, {Provider: "an", Model: "claude"}},
	}
}

func TestShortKeysRefused(t *testing.T) {
	short := []byte("too-short")
	if _, err := NewSigner(short); err == nil {
		t.Errorf("NewSigner(%d bytes): got nil error, want error", len(short))
	}
	if _, err := NewVerifier(short); err == nil {
		t.Errorf("NewVerifier(%d bytes): got nil error, want error", len(short))
	}
}

func TestRoundTrip(t *testing.T) {
	s, v := newPair(t, testKey)
	now := time.Now().Truncate(time.Second)
	s.now = func() time.Time { return now }
	tok, err := s.Sign(fullClaims())
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	got, err := v.Verify(tok)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	want := fullClaims()
	gotApp := *got
	gotApp.RegisteredClaims = jwt.RegisteredClaims{}
	if !reflect.DeepEqual(&gotApp, want) {
		t.Errorf("claims:\n got %+v\nwant %+v", &gotApp, want)
	}
	if got.Issuer != issuer {
		t.Errorf("Issuer = %q, want %q", got.Issuer, issuer)
	}
	if got.IssuedAt == nil || !got.IssuedAt.Time.Equal(now) {
		t.Errorf("IssuedAt = %v, want %v", got.IssuedAt, now)
	}
	if got.ExpiresAt == nil || !got.ExpiresAt.Time.Equal(now.Add(TTL)) {
		t.Errorf("ExpiresAt = %v, want %v", got.ExpiresAt, now.Add(TTL))
	}
}

// TestEmptyChainRefused: no endpoint is served without a provider chain (GET /v1/models is
// answered by extproc itself and never mints a token).
func TestEmptyChainRefused(t *testing.T) {
	s, v := newPair(t, testKey)
	c := &Claims{RequestID: "r", KeyID: "vk_1", Endpoint: "models", Format: "openai"}
	tok, err := s.Sign(c)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if _, err := v.Verify(tok); err == nil {
		t.Error("Verify accepted a token without a chain")
	}
}

// hs256 signs arbitrary claims with key, bypassing Signer, to build hostile tokens.
func hs256(t *testing.T, key []byte, c jwt.Claims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(key)
	if err != nil {
		t.Fatalf("SignedString: %v", err)
	}
	return tok
}

func TestVerifyRefuses(t *testing.T) {
	now := time.Now()
	valid := func(mod func(c *Claims)) *Claims {
		c := fullClaims()
		c.Issuer = issuer
		c.IssuedAt = jwt.NewNumericDate(now)
		c.ExpiresAt = jwt.NewNumericDate(now.Add(TTL))
		mod(c)
		return c
	}
	wrongKeySigner, _ := NewSigner(otherKey)
	wrongKeyTok, err := wrongKeySigner.Sign(fullClaims())
	if err != nil {
		t.Fatal(err)
	}
	expiredSigner, _ := NewSigner(testKey)
	expiredSigner.now = func() time.Time { return now.Add(-TTL - time.Minute) }
	expiredTok, err := expiredSigner.Sign(fullClaims())
	if err != nil {
		t.Fatal(err)
	}
	noneTok, err := jwt.NewWithClaims(jwt.SigningMethodNone, valid(func(*Claims) {})).
		SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	hs512Tok, err := jwt.NewWithClaims(jwt.SigningMethodHS512, valid(func(*Claims) {})).SignedString(testKey)
	if err != nil {
		t.Fatal(err)
	}
	good := hs256(t, testKey, valid(func(*Claims) {}))

	tests := []struct {
		name  string
		token string
	}{
		{"empty", ""},
		{"garbage", "not.a.jwt"},
		{"wrong key", wrongKeyTok},
		{"expired", expiredTok},
		{"alg none", noneTok},
		{"alg HS512", hs512Tok},
		{"tampered signature", good[:len(good)-2] + flip(good[len(good)-2:])},
		{"wrong issuer", hs256(t, testKey, valid(func(c *Claims) { c.Issuer = "someone-else" }))},
		{"no issuer", hs256(t, testKey, valid(func(c *Claims) { c.Issuer = "" }))},
		{"no expiry", hs256(t, testKey, valid(func(c *Claims) { c.ExpiresAt = nil }))},
		{"missing request id", hs256(t, testKey, valid(func(c *Claims) { c.RequestID = "" }))},
		{"missing key id", hs256(t, testKey, valid(func(c *Claims) { c.KeyID = "" }))},
		{"missing chain", hs256(t, testKey, valid(func(c *Claims) { c.Chain = nil }))},
	}
	_, v := newPair(t, testKey)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := v.Verify(tt.token)
			if err == nil {
				t.Fatalf("Verify: got claims %+v, want error", got)
			}
			if got != nil {
				t.Errorf("Verify: got non-nil claims alongside error %v", err)
			}
			if tt.token != "" && strings.Contains(err.Error(), tt.token) {
				t.Errorf("error %q contains the token", err)
			}
		})
	}
}

func TestLeeway(t *testing.T) {
	s, v := newPair(t, testKey)
	// Expired two seconds ago: inside the 5 s leeway.
	s.now = func() time.Time { return time.Now().Add(-TTL - 2*time.Second) }
	tok, err := s.Sign(fullClaims())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(tok); err != nil {
		t.Errorf("Verify(token expired within leeway): %v, want nil", err)
	}
}

// flip changes every character of s to a different base64url character.
func flip(s string) string {
	b := []byte(s)
	for i := range b {
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
	}
	return string(b)
}
