package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/secretbox"
)

// prepareProvider seals a write-only "api_key" under the keyring with the provider's id
// as associated data. On PATCH, an absent api_key keeps the stored credentials and
// "api_key": null removes them.
//
// A credential belongs to the endpoint it was given for: moving a provider to another
// base_url (or type) without sending its api_key again is refused, or anyone allowed to
// update providers could point a stored key at a host of their choosing.
func prepareProvider(s *Server, res, old config.Resource, wo map[string]json.RawMessage) (*prepared, error) {
	mp := res.(*config.ModelProvider)
	raw, ok := wo["api_key"]
	if !ok {
		if prev, _ := old.(*config.ModelProvider); prev != nil && !mp.Credentials.IsZero() &&
			(prev.BaseURL != mp.BaseURL || prev.Type != mp.Type) {
			return nil, invalid([]string{"changing base_url or type requires sending api_key again (or api_key: null)"})
		}
		return &prepared{}, nil
	}
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		mp.Credentials = secretbox.Sealed{}
		return &prepared{}, nil
	}
	var key string
	if json.Unmarshal(raw, &key) != nil || strings.TrimSpace(key) == "" {
		return nil, invalid([]string{"api_key must be a non-empty string"})
	}
	sealed, err := s.keyring.Seal([]byte(key), config.CredentialsAAD(mp.ID))
	if err != nil {
		return nil, err
	}
	mp.Credentials = sealed
	return &prepared{}, nil
}

// providerView replaces the sealed credentials with "has_credentials".
func providerView(_ *Server, res config.Resource, v map[string]any) {
	v["has_credentials"] = !res.(*config.ModelProvider).Credentials.IsZero()
}

// providerInUse lists the routing policies and virtual keys that name provider id.
func providerInUse(ctx context.Context, s *Server, id string) ([]string, error) {
	var users []string
	err := s.each(ctx, config.KindRoutingPolicy, func(res config.Resource) {
		if rp := res.(*config.RoutingPolicy); slices.Contains(rp.Providers, id) {
			users = append(users, "routing policy "+rp.ID)
		}
	})
	if err != nil {
		return nil, err
	}
	err = s.each(ctx, config.KindVirtualKey, func(res config.Resource) {
		if k := res.(*config.VirtualKey); slices.Contains(k.Config.ProvidersAllowed, id) {
			users = append(users, "virtual key "+k.ID)
		}
	})
	return users, err
}

// policyRefs requires every provider of a routing policy to exist.
func policyRefs(ctx context.Context, s *Server, res config.Resource) ([]string, []string, error) {
	rp := res.(*config.RoutingPolicy)
	var problems []string
	for i, id := range rp.Providers {
		ok, err := s.exists(ctx, config.KindModelProvider, id)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			problems = append(problems, fmt.Sprintf("providers[%d]: no model provider %q", i, id))
		}
	}
	warnings, err := s.scopeWarning(ctx, rp.Scope)
	return problems, warnings, err
}

// policyInUse lists the virtual keys that use routing policy id.
func policyInUse(ctx context.Context, s *Server, id string) ([]string, error) {
	var users []string
	err := s.each(ctx, config.KindVirtualKey, func(res config.Resource) {
		if k := res.(*config.VirtualKey); k.RoutingPolicyID == id {
			users = append(users, "virtual key "+k.ID)
		}
	})
	return users, err
}

// each calls fn for every decodable document of kind.
func (s *Server) each(ctx context.Context, kind config.Kind, fn func(config.Resource)) error {
	docs, err := s.store.List(ctx, kind)
	if err != nil {
		return err
	}
	for _, d := range docs {
		if res, err := config.DecodeResource(kind, d.Value); err == nil {
			fn(res)
		}
	}
	return nil
}

// rewrapProviders re-seals under the keyring's primary key every provider credential sealed
// under another one, so that after a master-key rotation (new primary first, old key kept for
// reading) the old key can be retired. It is idempotent: run it until it rewraps nothing.
func (s *Server) rewrapProviders(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	docs, err := s.store.List(ctx, config.KindModelProvider)
	if err != nil {
		return err
	}
	n := 0
	for _, d := range docs {
		var mp config.ModelProvider
		if err := json.Unmarshal(d.Value, &mp); err != nil {
			return fmt.Errorf("model provider %s: %w", d.ID, err)
		}
		if mp.Credentials.IsZero() || mp.Credentials.KeyID == s.keyring.PrimaryID() {
			continue
		}
		sealed, err := s.keyring.Rewrap(mp.Credentials, config.CredentialsAAD(mp.ID))
		if err != nil {
			return fmt.Errorf("model provider %s: %w", mp.ID, err)
		}
		mp.Credentials, mp.UpdatedAt = sealed, s.now().UTC()
		if _, err := s.store.Put(ctx, config.KindModelProvider, mp.ID, mustJSON(&mp), d.Revision); err != nil {
			return storeError(err, "model provider", mp.ID)
		}
		n++
	}
	writeJSON(w, http.StatusOK, map[string]any{"rewrapped": n, "primary_key_id": s.keyring.PrimaryID()})
	return nil
}
