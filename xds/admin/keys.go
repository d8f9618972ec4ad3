package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/vkey"
	"github.com/sluice-gateway/sluice/xds/store"
)

// KeyHashIndex is the store index from a virtual key's secret hash (hex
// HMAC-SHA256(pepper, secret)) to the key's id. A key owns the entry of its current hash
// and, during a rotation grace, of its previous one; a revoked or disabled key keeps its
// entries so the gateway can answer virtual_key_revoked or virtual_key_disabled rather
// than invalid_api_key.
const KeyHashIndex = "vk_hash"

func keySpec() *spec { return specs[0] }

// prepareKey mints the secret of a new key; on every later write it drops a previous
// hash whose grace has passed (the lazy half of the rotation cleanup; Sweep is the other).
func prepareKey(s *Server, res, old config.Resource, _ map[string]json.RawMessage) (*prepared, error) {
	k := res.(*config.VirtualKey)
	p := &prepared{}
	if old != nil {
		s.expirePrevious(k, p)
		return p, nil
	}
	secret, err := vkey.NewSecret()
	if err != nil {
		return nil, err
	}
	k.Hash, k.DisplayPrefix, k.Status = s.hasher.Sum(secret).Hex(), vkey.DisplayPrefix(secret), config.KeyActive
	k.PreviousHash, k.PreviousHashValidUntil = "", nil
	p.index = map[string]string{KeyHashIndex: k.Hash}
	p.oneTime = map[string]any{"secret": secret}
	return p, nil
}

// expirePrevious forgets k's previous hash once its grace has passed, and unindexes it.
func (s *Server) expirePrevious(k *config.VirtualKey, p *prepared) {
	if k.PreviousHash == "" || (k.PreviousHashValidUntil != nil && s.now().Before(*k.PreviousHashValidUntil)) {
		return
	}
	p.unindex = map[string]string{KeyHashIndex: k.PreviousHash}
	k.PreviousHash, k.PreviousHashValidUntil = "", nil
}

// keyRefs enforces the key's routing policy and allowed providers; its scope and
// principal only warn.
func keyRefs(ctx context.Context, s *Server, res config.Resource) ([]string, []string, error) {
	k := res.(*config.VirtualKey)
	var problems []string
	if k.RoutingPolicyID != "" {
		ok, err := s.exists(ctx, config.KindRoutingPolicy, k.RoutingPolicyID)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			problems = append(problems, fmt.Sprintf("routing_policy_id: no routing policy %q", k.RoutingPolicyID))
		}
	}
	for i, id := range k.Config.ProvidersAllowed {
		ok, err := s.exists(ctx, config.KindModelProvider, id)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			problems = append(problems, fmt.Sprintf("config.providers_allowed[%d]: no model provider %q", i, id))
		}
	}
	missing, err := s.missingGuardrails(ctx, "config.guardrails", k.Config.Guardrails)
	if err != nil {
		return nil, nil, err
	}
	problems = append(problems, missing...)
	warnings, err := s.scopeWarning(ctx, k.Scope)
	if err != nil {
		return nil, nil, err
	}
	if k.PrincipalID != "" {
		w, err := s.scopeWarning(ctx, config.Scope{Kind: config.ScopePrincipal, ID: k.PrincipalID})
		if err != nil {
			return nil, nil, err
		}
		warnings = append(warnings, w...)
	}
	return problems, warnings, nil
}

// keyView shows whether the key is expired and until when a rotated-out secret works.
func keyView(s *Server, res config.Resource, v map[string]any) {
	k := res.(*config.VirtualKey)
	now := s.now()
	if k.ExpiresAt != nil {
		v["expired"] = k.Expired(now)
	}
	if k.PreviousHash != "" && k.PreviousHashValidUntil != nil && now.Before(*k.PreviousHashValidUntil) {
		v["previous_secret_valid_until"] = k.PreviousHashValidUntil.UTC()
	}
}

// keyAction is a lifecycle transition: POST /v1/virtual-keys/{id}/<name>.
type keyAction struct {
	name   string
	fields []string // body fields it accepts
	apply  func(s *Server, k *config.VirtualKey, body map[string]json.RawMessage, p *prepared) error
}

var errRevoked = conflict("The virtual key is revoked; revocation is permanent.")

var keyActions = []keyAction{
	{name: "rotate", fields: []string{"grace_seconds"}, apply: rotate},
	{name: "disable", apply: func(s *Server, k *config.VirtualKey, _ map[string]json.RawMessage, p *prepared) error {
		if k.Status == config.KeyRevoked {
			return errRevoked
		}
		s.expirePrevious(k, p)
		k.Status = config.KeyDisabled
		return nil
	}},
	{name: "enable", apply: func(s *Server, k *config.VirtualKey, _ map[string]json.RawMessage, p *prepared) error {
		if k.Status == config.KeyRevoked {
			return errRevoked
		}
		s.expirePrevious(k, p)
		k.Status = config.KeyActive
		return nil
	}},
	{name: "revoke", apply: func(s *Server, k *config.VirtualKey, _ map[string]json.RawMessage, p *prepared) error {
		s.expirePrevious(k, p)
		k.Status = config.KeyRevoked
		return nil
	}},
}

// rotate gives k a new secret. The old one keeps working for the grace (the request's
// grace_seconds, default the server's RotationGrace); a secret rotated out earlier is
// dropped at once, since a key has at most one previous secret.
func rotate(s *Server, k *config.VirtualKey, body map[string]json.RawMessage, p *prepared) error {
	if k.Status == config.KeyRevoked {
		return errRevoked
	}
	grace := s.grace
	if raw, ok := body["grace_seconds"]; ok {
		var sec int64
		if json.Unmarshal(raw, &sec) != nil || sec < 0 || sec > int64(365*24*time.Hour/time.Second) {
			return badRequest("invalid_request", "grace_seconds must be a whole number of seconds from 0 to 31536000.")
		}
		grace = time.Duration(sec) * time.Second
	}
	secret, err := vkey.NewSecret()
	if err != nil {
		return err
	}
	if k.PreviousHash != "" {
		p.unindex = map[string]string{KeyHashIndex: k.PreviousHash}
	}
	until := s.now().UTC().Add(grace)
	k.PreviousHash, k.PreviousHashValidUntil = k.Hash, &until
	k.Hash, k.DisplayPrefix = s.hasher.Sum(secret).Hex(), vkey.DisplayPrefix(secret)
	p.index = map[string]string{KeyHashIndex: k.Hash}
	p.oneTime = map[string]any{"secret": secret}
	return nil
}

func (s *Server) keyAction(w http.ResponseWriter, r *http.Request, a keyAction) error {
	sp := keySpec()
	id := r.PathValue("id")
	want, err := ifMatch(r)
	if err != nil {
		return err
	}
	body, err := readObject(r)
	if err != nil {
		return err
	}
	var problems []string
	for f := range body {
		if !slices.Contains(a.fields, f) {
			problems = append(problems, fmt.Sprintf("field %q is not accepted by %s", f, a.name))
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return invalid(problems)
	}
	res, doc, err := s.load(r.Context(), sp, id)
	if err != nil {
		return err
	}
	if want != 0 && want != doc.Revision {
		return storeError(store.ErrConflict, sp.what, id)
	}
	k := res.(*config.VirtualKey)
	p := &prepared{}
	if err := a.apply(s, k, body, p); err != nil {
		return err
	}
	k.UpdatedAt = s.now().UTC()
	if err := k.Validate(); err != nil { // the stored key was valid; this would be our bug
		return fmt.Errorf("admin: %s produced an invalid key: %w", a.name, err)
	}
	return s.write(w, r, sp, k, doc.Revision, p, nil)
}

// Sweep removes previous (rotated-out) secret hashes whose grace has passed from every
// virtual key and from the KeyHashIndex, and returns how many keys it changed. Expired
// hashes are also dropped lazily on the next write of their key, and the gateway refuses
// them by their valid-until time either way; Sweep only keeps the index tidy, so running
// it every few minutes (RunSweeper) is plenty. A key written concurrently is skipped
// and caught by the next sweep.
func (s *Server) Sweep(ctx context.Context) (int, error) {
	docs, err := s.store.List(ctx, config.KindVirtualKey)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, doc := range docs {
		res, err := config.DecodeResource(config.KindVirtualKey, doc.Value)
		if err != nil {
			continue
		}
		k := res.(*config.VirtualKey)
		p := &prepared{}
		s.expirePrevious(k, p)
		if p.unindex == nil {
			continue
		}
		val, err := json.Marshal(k)
		if err != nil {
			return n, err
		}
		_, err = s.store.PutIndexed(ctx, config.KindVirtualKey, k.ID, val, doc.Revision, nil, p.unindex)
		switch {
		case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrNotFound):
			continue
		case err != nil:
			return n, err
		}
		n++
	}
	return n, nil
}

// RunSweeper calls Sweep every interval until ctx ends, logging failures.
func (s *Server) RunSweeper(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n, err := s.Sweep(ctx)
			if err != nil && ctx.Err() == nil {
				s.logger.Warn("admin: sweeping rotated-out key hashes failed", "err", err)
			} else if n > 0 {
				s.logger.Info("admin: swept rotated-out key hashes", "keys", n)
			}
		}
	}
}
