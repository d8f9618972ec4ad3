// Package vkey mints virtual-key secrets and computes the keyed hash under which they are
// stored. A secret is shown once; only HMAC-SHA256(pepper, secret) is kept.
//
// Secret format: "sk-sluice-" + 32 base62 characters of randomness (190 bits) + 6 base62
// characters of CRC32 checksum over the random part. The fixed prefix lets secret scanners
// spot a leaked key, the checksum lets them (and us) reject typos without a lookup, and the
// "sk-" start satisfies clients that expect an OpenAI-style key.
package vkey

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"hash/crc32"
	"io"
	"math/big"
	"strings"
	"sync"
)

// Prefix starts every Sluice secret.
const Prefix = "sk-sluice-"

const (
	randLen  = 32
	sumLen   = 6
	alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

// NewSecret returns a fresh secret.
func NewSecret() (string, error) {
	var b strings.Builder
	b.Grow(len(Prefix) + randLen + sumLen)
	b.WriteString(Prefix)
	max := big.NewInt(int64(len(alphabet)))
	body := make([]byte, randLen)
	for i := range body {
		n, err := rand.Int(rand.Reader, max)
		if err != nil {
			return "", err
		}
		body[i] = alphabet[n.Int64()]
	}
	b.Write(body)
	b.WriteString(checksum(body))
	return b.String(), nil
}

func checksum(body []byte) string {
	sum := crc32.ChecksumIEEE(body)
	out := make([]byte, sumLen)
	for i := sumLen - 1; i >= 0; i-- {
		out[i] = alphabet[sum%62]
		sum /= 62
	}
	return string(out)
}

// WellFormed reports whether s has the Sluice secret shape and a valid checksum.
func WellFormed(s string) bool {
	if len(s) != len(Prefix)+randLen+sumLen || !strings.HasPrefix(s, Prefix) {
		return false
	}
	body := s[len(Prefix) : len(Prefix)+randLen]
	for i := 0; i < len(body); i++ {
		if strings.IndexByte(alphabet, body[i]) < 0 {
			return false
		}
	}
	return checksum([]byte(body)) == s[len(Prefix)+randLen:]
}

// Hasher computes the stored form of a secret.
//
// Keyed HMAC state is pooled: Sum runs once per request on the hot path, and hmac.New
// would otherwise rebuild the keyed inner and outer pads every time.
type Hasher struct {
	pepper []byte
	pool   sync.Pool // of hash.Hash, keyed with pepper
}

// NewHasher returns a hasher for pepper, which must be at least 32 bytes.
func NewHasher(pepper []byte) (*Hasher, error) {
	if len(pepper) < 32 {
		return nil, errors.New("vkey: pepper must be at least 32 bytes")
	}
	h := &Hasher{pepper: pepper}
	h.pool.New = func() any { return hmac.New(sha256.New, h.pepper) }
	return h, nil
}

// Digest is HMAC-SHA256(pepper, secret).
type Digest [sha256.Size]byte

// Sum returns the digest of secret.
func (h *Hasher) Sum(secret string) Digest {
	m := h.pool.Get().(hash.Hash)
	m.Reset()
	_, _ = io.WriteString(m, secret)
	var d Digest
	m.Sum(d[:0])
	h.pool.Put(m)
	return d
}

// Hex returns the digest in hex, the form stored in config.
func (d Digest) Hex() string { return hex.EncodeToString(d[:]) }

// ParseDigest parses a hex digest.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(d) {
		return d, errors.New("vkey: digest must be 64 hex characters")
	}
	copy(d[:], b)
	return d, nil
}

// DisplayPrefix is the short, non-secret part of a secret shown in listings.
func DisplayPrefix(secret string) string {
	n := len(Prefix) + 4
	if len(secret) < n {
		return ""
	}
	return secret[:n]
}
