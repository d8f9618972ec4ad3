package extproc

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/sluice-gateway/sluice/internal/apierror"
	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/vkey"
)

var (
	errKeyDisabled = apierror.New(http.StatusForbidden, "virtual_key_disabled", "This virtual key is disabled.")
	errKeyRevoked  = apierror.New(http.StatusForbidden, "virtual_key_revoked", "This virtual key has been revoked.")
	errKeyExpired  = apierror.New(http.StatusForbidden, "virtual_key_expired", "This virtual key has expired.")
)

// authenticate maps a presented secret to its key. The secret's hash is looked up in the
// compiled config; on a miss, and only then, the resolver is asked once (bounded by
// ResolveTimeout) and the fresh config consulted again. The errors never echo the secret.
func (s *Server) authenticate(ctx context.Context, st *compiled, secret string) (*keyEntry, *apierror.Error) {
	d := s.cfg.Hasher.Sum(secret)
	ref := st.keys[d]
	if ref == nil && s.resolver != nil && !s.misses.recent(d) {
		ref = s.resolve(ctx, d)
	}
	// The map is keyed by HMAC(pepper, secret): what a lookup's timing could reveal is
	// about digests, which an attacker cannot steer without the pepper, not about secrets.
	if ref == nil {
		return nil, apierror.ErrInvalidAPIKey
	}
	now := s.cfg.Now()
	if !ref.until.IsZero() && !now.Before(ref.until) {
		return nil, apierror.ErrInvalidAPIKey // a rotated-out secret past its grace
	}
	k := ref.key
	switch k.status {
	case config.KeyActive:
	case config.KeyDisabled:
		return nil, errKeyDisabled
	case config.KeyRevoked:
		return nil, errKeyRevoked
	default:
		return nil, apierror.ErrInvalidAPIKey
	}
	if !k.expires.IsZero() && !now.Before(k.expires) {
		return nil, errKeyExpired
	}
	return k, nil
}

// maxLookups bounds on-demand lookups in flight. Anyone can make well-formed secrets (the
// checksum is no secret), so without a bound a flood of made-up keys would queue lookups
// on the fleet stream ahead of real pushes.
const maxLookups = 16

// resolve asks the resolver for a hash this replica has not seen. When lookups are at
// their bound the key is refused as unknown: a real new key is pushed within milliseconds
// anyway, and the client's retry finds it.
func (s *Server) resolve(ctx context.Context, d vkey.Digest) *keyRef {
	select {
	case s.lookups <- struct{}{}:
		defer func() { <-s.lookups }()
	default:
		return nil
	}
	lctx, cancel := context.WithTimeout(ctx, s.cfg.ResolveTimeout)
	found, err := s.resolver.ResolveKeyHash(lctx, d.Hex())
	cancel()
	switch {
	case found:
		return s.state.Load().keys[d]
	case err == nil:
		s.misses.add(d)
	case s.lookupWarn.Allow():
		// Rate-limited: while the control plane is away every unknown key fails here.
		s.cfg.Logger.Warn("extproc: on-demand key lookup failed", "err", err)
	}
	return nil
}

// missCache remembers hashes the control plane did not know, for a short time, so a client
// retrying a wrong key (or a flood of made-up ones) costs one lookup, not one per request.
// It is bounded: when full it forgets everything, which only costs extra lookups.
type missCache struct {
	ttl time.Duration
	max int

	mu sync.Mutex // guards m
	m  map[vkey.Digest]time.Time
}

func newMissCache(max int, ttl time.Duration) *missCache {
	return &missCache{ttl: ttl, max: max, m: make(map[vkey.Digest]time.Time)}
}

func (c *missCache) recent(d vkey.Digest) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.m[d]
	if ok && time.Since(t) > c.ttl {
		delete(c.m, d)
		return false
	}
	return ok
}

func (c *missCache) add(d vkey.Digest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[d] = time.Now()
}
