package vkey

import (
	"bytes"
	"strings"
	"testing"
)

var testPepper = []byte("pepper-pepper-pepper-pepper-pepper")

func TestNewSecretWellFormed(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		s, err := NewSecret()
		if err != nil {
			t.Fatalf("NewSecret: %v", err)
		}
		if !strings.HasPrefix(s, Prefix) {
			t.Errorf("secret %q lacks prefix %q", s, Prefix)
		}
		if got, want := len(s), len(Prefix)+randLen+sumLen; got != want {
			t.Errorf("len(secret) = %d, want %d", got, want)
		}
		for _, c := range s[len(Prefix):] {
			if !strings.ContainsRune(alphabet, c) {
				t.Errorf("secret %q has non-base62 character %q", s, c)
			}
		}
		if !WellFormed(s) {
			t.Errorf("WellFormed(%q) = false, want true", s)
		}
		if seen[s] {
			t.Errorf("NewSecret returned %q twice", s)
		}
		seen[s] = true
	}
}

func TestWellFormedCatchesEverySingleCharTypo(t *testing.T) {
	s, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	for i := range len(s) {
		for _, c := range []byte(alphabet + "-_") {
			if c == s[i] {
				continue
			}
			typo := s[:i] + string(c) + s[i+1:]
			if WellFormed(typo) {
				t.Errorf("WellFormed(%q) = true after changing position %d from %q to %q", typo, i, s[i], c)
			}
		}
	}
}

func TestWellFormedRejects(t *testing.T) {
	s, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"prefix only", Prefix},
		{"too short", s[:len(s)-1]},
		{"too long", s + "0"},
		{"wrong prefix", "sk-sloice-" + s[len(Prefix):]},
		{"openai style", "sk-proj-" + s[len(Prefix):]},
		{"non-alphabet body", s[:len(Prefix)] + "!" + s[len(Prefix)+1:]},
		{"swapped halves", Prefix + s[len(Prefix)+randLen:] + s[len(Prefix):len(Prefix)+randLen]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if WellFormed(tt.in) {
				t.Errorf("WellFormed(%q) = true, want false", tt.in)
			}
		})
	}
}

func TestHasher(t *testing.T) {
	if _, err := NewHasher([]byte("short")); err == nil {
		t.Errorf("NewHasher(short pepper): got nil error, want error")
	}
	h1, err := NewHasher(testPepper)
	if err != nil {
		t.Fatal(err)
	}
	h1again, _ := NewHasher(bytes.Clone(testPepper))
	other := bytes.Clone(testPepper)
	other[0] ^= 1
	h2, _ := NewHasher(other)

	const secret = "sk-sluice-example"
	if got, want := h1.Sum(secret), h1again.Sum(secret); got != want {
		t.Errorf("same pepper, same secret: %s != %s", got.Hex(), want.Hex())
	}
	if h1.Sum(secret) == h2.Sum(secret) {
		t.Errorf("different peppers gave the same digest")
	}
	if h1.Sum(secret) == h1.Sum(secret+"x") {
		t.Errorf("different secrets gave equal digests")
	}
	d := h1.Sum(secret)
	if got := len(d.Hex()); got != 64 {
		t.Errorf("len(Hex()) = %d, want 64", got)
	}
	back, err := ParseDigest(d.Hex())
	if err != nil {
		t.Fatalf("ParseDigest(Hex()): %v", err)
	}
	if back != d {
		t.Errorf("ParseDigest(Hex()) = %s, want %s", back.Hex(), d.Hex())
	}
	if up, err := ParseDigest(strings.ToUpper(d.Hex())); err != nil || up != d {
		t.Errorf("ParseDigest(upper case) = %s, %v; want %s, nil", up.Hex(), err, d.Hex())
	}
}

func TestParseDigestErrors(t *testing.T) {
	valid := strings.Repeat("ab", 32)
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"odd length", valid[:63]},
		{"too short", valid[:62]},
		{"too long", valid + "ab"},
		{"non-hex", "zz" + valid[2:]},
		{"sha256: prefix", "sha256:" + valid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseDigest(tt.in); err == nil {
				t.Errorf("ParseDigest(%q): got nil error, want error", tt.in)
			}
		})
	}
}

func TestDisplayPrefix(t *testing.T) {
	tests := []struct{ in, want string }{
		{"sk-sluice-ABCDEFGH", "sk-sluice-ABCD"},
		{"sk-sluice-ABCD", "sk-sluice-ABCD"},
		{"sk-sluice-AB", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := DisplayPrefix(tt.in); got != tt.want {
			t.Errorf("DisplayPrefix(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func BenchmarkHasherSum(b *testing.B) {
	h, _ := NewHasher([]byte("pepper-0123456789-0123456789-0123456789"))
	secret, _ := NewSecret()
	b.ReportAllocs()
	for b.Loop() {
		_ = h.Sum(secret)
	}
}
