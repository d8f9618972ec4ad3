package secretbox

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

func mustKeyring(t *testing.T, primary string, keys map[string][]byte) *Keyring {
	t.Helper()
	k, err := NewKeyring(primary, keys)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestRoundTrip(t *testing.T) {
	k := mustKeyring(t, "k1", map[string][]byte{"k1": key(1)})
	aad := []byte("model_provider/mp_1")
	for _, pt := range [][]byte{nil, []byte("sk-provider-secret"), bytes.Repeat([]byte("x"), 10000)} {
		s, err := k.Seal(pt, aad)
		if err != nil {
			t.Fatal(err)
		}
		if s.KeyID != "k1" || len(s.Nonce) != 12 || s.Validate() != nil {
			t.Fatalf("sealed = %v, validate %v", s, s.Validate())
		}
		if len(pt) > 0 && bytes.Contains(s.Ciphertext, pt) {
			t.Fatal("ciphertext contains plaintext")
		}
		got, err := k.Open(s, aad)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("Open = %q, %v", got, err)
		}
	}
	a, _ := k.Seal([]byte("same"), aad)
	b, _ := k.Seal([]byte("same"), aad)
	if bytes.Equal(a.Nonce, b.Nonce) || bytes.Equal(a.Ciphertext, b.Ciphertext) {
		t.Fatal("two seals of one plaintext are identical: nonce reuse")
	}
}

func TestJSON(t *testing.T) {
	k := mustKeyring(t, "k1", map[string][]byte{"k1": key(1)})
	s, _ := k.Seal([]byte("canary-plaintext"), []byte("a"))
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"nonce":"`+base64.StdEncoding.EncodeToString(s.Nonce)+`"`) {
		t.Fatalf("json %s: nonce not base64", b)
	}
	var back Sealed
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if got, err := k.Open(back, []byte("a")); err != nil || string(got) != "canary-plaintext" {
		t.Fatalf("after JSON: %q, %v", got, err)
	}
}

func TestOpenFailures(t *testing.T) {
	k := mustKeyring(t, "k1", map[string][]byte{"k1": key(1)})
	s, _ := k.Seal([]byte("secret"), []byte("mp_1"))
	tamper := func(f func(*Sealed)) Sealed {
		c := Sealed{KeyID: s.KeyID, Nonce: bytes.Clone(s.Nonce), Ciphertext: bytes.Clone(s.Ciphertext)}
		f(&c)
		return c
	}
	cases := []struct {
		name string
		s    Sealed
		aad  string
		want error
	}{
		{"wrong aad", s, "mp_2", ErrOpen},
		{"no aad", s, "", ErrOpen},
		{"flipped ciphertext bit", tamper(func(c *Sealed) { c.Ciphertext[0] ^= 1 }), "mp_1", ErrOpen},
		{"flipped tag bit", tamper(func(c *Sealed) { c.Ciphertext[len(c.Ciphertext)-1] ^= 1 }), "mp_1", ErrOpen},
		{"truncated", tamper(func(c *Sealed) { c.Ciphertext = c.Ciphertext[:3] }), "mp_1", ErrOpen},
		{"flipped nonce", tamper(func(c *Sealed) { c.Nonce[0] ^= 1 }), "mp_1", ErrOpen},
		{"short nonce", tamper(func(c *Sealed) { c.Nonce = c.Nonce[:4] }), "mp_1", ErrOpen},
		{"unknown key", tamper(func(c *Sealed) { c.KeyID = "k9" }), "mp_1", ErrUnknownKey},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pt, err := k.Open(tc.s, []byte(tc.aad))
			if !errors.Is(err, tc.want) || pt != nil {
				t.Fatalf("Open = %q, %v; want %v", pt, err, tc.want)
			}
		})
	}
}

func TestRotation(t *testing.T) {
	aad := []byte("mp_1")
	k1 := mustKeyring(t, "k1", map[string][]byte{"k1": key(1)})
	old, _ := k1.Seal([]byte("credential"), aad)

	k2 := mustKeyring(t, "k2", map[string][]byte{"k1": key(1), "k2": key(2)})
	if got, err := k2.Open(old, aad); err != nil || string(got) != "credential" {
		t.Fatalf("open old under rotated ring: %q, %v", got, err)
	}
	re, err := k2.Rewrap(old, aad)
	if err != nil || re.KeyID != "k2" {
		t.Fatalf("Rewrap = %v, %v", re, err)
	}
	if again, _ := k2.Rewrap(re, aad); again.KeyID != "k2" || !bytes.Equal(again.Ciphertext, re.Ciphertext) {
		t.Fatal("Rewrap of a primary-sealed value should be a no-op")
	}
	if _, err := k2.Rewrap(old, []byte("mp_2")); !errors.Is(err, ErrOpen) {
		t.Fatalf("Rewrap with wrong aad: %v", err)
	}

	only2 := mustKeyring(t, "k2", map[string][]byte{"k2": key(2)})
	if got, err := only2.Open(re, aad); err != nil || string(got) != "credential" {
		t.Fatalf("open rewrapped after dropping k1: %q, %v", got, err)
	}
	if _, err := only2.Open(old, aad); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("open old after dropping k1: %v", err)
	}
}

func TestNewKeyringErrors(t *testing.T) {
	cases := map[string]struct {
		primary string
		keys    map[string][]byte
	}{
		"short key":       {"k1", map[string][]byte{"k1": make([]byte, 16)}},
		"long key":        {"k1", map[string][]byte{"k1": make([]byte, 33)}},
		"no primary":      {"k2", map[string][]byte{"k1": key(1)}},
		"bad id":          {"a b", map[string][]byte{"a b": key(1)}},
		"no keys":         {"k1", nil},
		"bad secondary":   {"k1", map[string][]byte{"k1": key(1), "k2": key(2)[:31]}},
		"empty primaryID": {"", map[string][]byte{"": key(1)}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if k, err := NewKeyring(tc.primary, tc.keys); err == nil {
				t.Fatalf("NewKeyring = %v, want error", k)
			}
		})
	}
}

func TestParseKeyring(t *testing.T) {
	b64 := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
	k, err := ParseKeyring(b64(key(1)) + "\n")
	if err != nil || k.PrimaryID() != DefaultKeyID {
		t.Fatalf("bare key: %v, %v", k, err)
	}
	k, err = ParseKeyring("new:" + base64.RawURLEncoding.EncodeToString(key(2)) + ", default:" + b64(key(1)))
	if err != nil || k.PrimaryID() != "new" || strings.Join(k.KeyIDs(), ",") != "default,new" {
		t.Fatalf("list: %v, %v", k, err)
	}
	secretish := b64(bytes.Repeat([]byte("Z"), 20)) // wrong length, recognisable
	for _, bad := range []string{"", "   ", "not base64!!", secretish, "k1:" + secretish,
		"k1:" + b64(key(1)) + ",k1:" + b64(key(2)), ":" + b64(key(1)), "k1" + b64(key(1)) + ",x"} {
		_, err := ParseKeyring(bad)
		if err == nil {
			t.Errorf("ParseKeyring(%q) succeeded", bad)
			continue
		}
		if strings.Contains(err.Error(), secretish) || (len(bad) > 8 && strings.Contains(err.Error(), bad)) {
			t.Errorf("error %q echoes key material", err)
		}
	}
}

func TestLoadKeyring(t *testing.T) {
	material := "k1:" + base64.StdEncoding.EncodeToString(key(1))
	file := filepath.Join(t.TempDir(), "master.key")
	if err := os.WriteFile(file, []byte(material+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("env", func(t *testing.T) {
		t.Setenv(EnvMasterKey, material)
		t.Setenv(EnvMasterKeyFile, "")
		if k, err := LoadKeyring(""); err != nil || k.PrimaryID() != "k1" {
			t.Fatalf("%v, %v", k, err)
		}
		if _, err := LoadKeyring(file); err == nil {
			t.Fatal("env and file both set: want error")
		}
	})
	t.Run("file flag", func(t *testing.T) {
		os.Unsetenv(EnvMasterKey)
		t.Setenv(EnvMasterKeyFile, "")
		if k, err := LoadKeyring(file); err != nil || k.PrimaryID() != "k1" {
			t.Fatalf("%v, %v", k, err)
		}
	})
	t.Run("file env", func(t *testing.T) {
		os.Unsetenv(EnvMasterKey)
		t.Setenv(EnvMasterKeyFile, file)
		if k, err := LoadKeyring(""); err != nil || k.PrimaryID() != "k1" {
			t.Fatalf("%v, %v", k, err)
		}
	})
	t.Run("none", func(t *testing.T) {
		os.Unsetenv(EnvMasterKey)
		t.Setenv(EnvMasterKeyFile, "")
		if _, err := LoadKeyring(""); !errors.Is(err, ErrNoMasterKey) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("bad env", func(t *testing.T) {
		t.Setenv(EnvMasterKey, "short")
		t.Setenv(EnvMasterKeyFile, "")
		if _, err := LoadKeyring(""); err == nil {
			t.Fatal("want error")
		}
	})
}

func TestNoSecretsInFormatting(t *testing.T) {
	raw := key(0xAB)
	k := mustKeyring(t, "k1", map[string][]byte{"k1": raw})
	s, _ := k.Seal([]byte("plaintext-canary"), nil)
	forms := []string{}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
		forms = append(forms, fmt.Sprintf(verb, k), fmt.Sprintf(verb, s), fmt.Sprintf(verb, &s))
	}
	for _, f := range forms {
		if strings.Contains(f, "plaintext-canary") || strings.Contains(f, string(raw)) ||
			strings.Contains(strings.ToLower(f), "abababab") || strings.Contains(f, "q6ur") {
			t.Errorf("formatted output leaks: %s", f)
		}
	}
}
