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
		lctx, cancel := context.WithTimeout(ctx, s.cfg.ResolveTimeout)
		found, err := s.resolver.ResolveKeyHash(lctx, d.Hex())
		cancel()
		if err != nil {
			s.cfg.Logger.Warn("extproc: on-demand key lookup failed", "err", err)
		}
		if found {
			ref = s.state.Load().keys[d]
		} else if err == nil {
			s.misses.add(d)
		}
	}
	if ref == nil || !vkey.Equal(ref.digest, d) {
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
