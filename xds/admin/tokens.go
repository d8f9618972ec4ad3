package admin

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/xds/store"
)

// Permission resources and verbs. A permission is "<resource>:<verb>", e.g.
// "virtualKeys:create". The virtual-key lifecycle actions (rotate, disable, enable,
// revoke) need virtualKeys:update.
const (
	permVirtualKeys     = "virtualKeys"
	permModelProviders  = "modelProviders"
	permRoutingPolicies = "routingPolicies"
	permBudgets         = "budgets"
	permGuardrails      = "guardrails"
	permOrganizations   = "organizations"
	permTeams           = "teams"
	permProjects        = "projects"
	permPrincipals      = "principals"
	permAPITokens       = "apiTokens"

	verbRead   = "read"
	verbCreate = "create"
	verbUpdate = "update"
	verbDelete = "delete"
)

// Permissions lists every permission an API token can hold.
func Permissions() []string {
	var out []string
	for _, res := range []string{permVirtualKeys, permModelProviders, permRoutingPolicies, permBudgets, permGuardrails,
		permOrganizations, permTeams, permProjects, permPrincipals, permAPITokens} {
		for _, verb := range []string{verbRead, verbCreate, verbUpdate, verbDelete} {
			out = append(out, res+":"+verb)
		}
	}
	return out
}

// API tokens are stored as documents of their own kind, which the fleet never receives.
const (
	tokenKind = config.KindAPIToken
	// TokenPrefix starts every API-token secret, so a leaked one is recognisable.
	TokenPrefix = "sluice-at-"
	tokenPrefix = TokenPrefix
	// TokenHashIndex maps hex HMAC-SHA256(pepper, token secret) to the token's id.
	TokenHashIndex = "api_token_hash"
)

// apiToken is the stored form of an API token: only the keyed hash of its secret.
type apiToken struct {
	ID            string     `json:"id"`
	Type          string     `json:"sluice_type"` // always "api_token"
	Name          string     `json:"name"`
	Permissions   []string   `json:"permissions"`
	Hash          string     `json:"hash"`
	DisplayPrefix string     `json:"display_prefix"`
	ExpiresAt     *time.Time `json:"expires_at,omitempty"`
	CreatedBy     string     `json:"created_by"`
	CreatedAt     time.Time  `json:"created_at"`
}

type tokenView struct {
	ID            string     `json:"id"`
	Name          string     `json:"name"`
	Permissions   []string   `json:"permissions"`
	DisplayPrefix string     `json:"display_prefix"`
	ExpiresAt     *time.Time `json:"expires_at,omitempty"`
	CreatedBy     string     `json:"created_by"`
	CreatedAt     time.Time  `json:"created_at"`
	Revision      int64      `json:"revision"`
	Secret        string     `json:"secret,omitempty"` // on create only
}

func (t *apiToken) view(rev int64) *tokenView {
	return &tokenView{ID: t.ID, Name: t.Name, Permissions: t.Permissions, DisplayPrefix: t.DisplayPrefix,
		ExpiresAt: t.ExpiresAt, CreatedBy: t.CreatedBy, CreatedAt: t.CreatedAt, Revision: rev}
}

func decodeToken(doc store.Doc) (*apiToken, error) {
	var t apiToken
	if err := json.Unmarshal(doc.Value, &t); err != nil {
		return nil, err
	}
	if t.Type != "api_token" {
		return nil, fmt.Errorf("admin: document %s is not an API token", doc.ID)
	}
	return &t, nil
}

// tokenByHash finds the token whose secret hashes to hash.
func (s *Server) tokenByHash(ctx context.Context, hash string) (*apiToken, store.Doc, error) {
	id, err := s.store.Index(ctx, TokenHashIndex, hash)
	if err != nil {
		return nil, store.Doc{}, err
	}
	return s.loadToken(ctx, id)
}

func (s *Server) loadToken(ctx context.Context, id string) (*apiToken, store.Doc, error) {
	if config.ValidateID(tokenKind, id) != nil {
		return nil, store.Doc{}, notFound("API token", id)
	}
	doc, err := s.store.Get(ctx, tokenKind, id)
	if err != nil {
		return nil, doc, storeError(err, "API token", id)
	}
	t, err := decodeToken(doc)
	return t, doc, err
}

type createTokenRequest struct {
	Name        string     `json:"name"`
	Permissions []string   `json:"permissions"`
	ExpiresAt   *time.Time `json:"expires_at"`
}

// createToken mints an API token. A caller can grant only permissions it holds itself.
func (s *Server) createToken(w http.ResponseWriter, r *http.Request) error {
	body, err := readObject(r)
	if err != nil {
		return err
	}
	var problems []string
	for k := range body {
		if k != "name" && k != "permissions" && k != "expires_at" {
			problems = append(problems, fmt.Sprintf("field %q is unknown or read-only", k))
		}
	}
	var req createTokenRequest
	if err := json.Unmarshal(mustJSON(body), &req); err != nil {
		problems = append(problems, "name must be a string, permissions a list of strings, expires_at an RFC 3339 time")
	}
	if req.Name == "" || len(req.Name) > 256 || strings.ContainsFunc(req.Name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		problems = append(problems, "name is required: up to 256 bytes, no control characters")
	}
	if len(req.Permissions) == 0 {
		problems = append(problems, "permissions is empty")
	}
	known, c := Permissions(), callerFrom(r.Context())
	for i, p := range req.Permissions {
		switch {
		case !slices.Contains(known, p):
			problems = append(problems, fmt.Sprintf("permissions[%d]: unknown permission %q", i, p))
		case !c.allows(p):
			return &Error{Status: http.StatusForbidden, Code: "permission_denied",
				Message: fmt.Sprintf("A token can only grant permissions its creator holds; this one lacks %s.", p)}
		}
	}
	if c.expires != nil && (req.ExpiresAt == nil || req.ExpiresAt.After(*c.expires)) {
		return &Error{Status: http.StatusForbidden, Code: "permission_denied",
			Message: "A token can only mint tokens that expire no later than itself."}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return invalid(problems)
	}
	slices.Sort(req.Permissions)
	var raw [32]byte
	_, _ = rand.Read(raw[:])
	secret := tokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	t := &apiToken{ID: config.NewID(tokenKind),
		Type: "api_token", Name: req.Name, Permissions: slices.Compact(req.Permissions),
		Hash: s.hasher.Sum(secret).Hex(), DisplayPrefix: secret[:len(tokenPrefix)+4], ExpiresAt: req.ExpiresAt,
		CreatedBy: c.String(), CreatedAt: s.now().UTC()}
	doc, err := s.store.PutIndexed(r.Context(), tokenKind, t.ID, mustJSON(t), store.CreateOnly,
		map[string]string{TokenHashIndex: t.Hash}, nil)
	if err != nil {
		return storeError(err, "API token", t.ID)
	}
	v := t.view(doc.Revision)
	v.Secret = secret
	writeJSON(w, http.StatusCreated, v)
	return nil
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) error {
	docs, err := s.store.List(r.Context(), tokenKind)
	if err != nil {
		return err
	}
	out := struct {
		Data []*tokenView `json:"data"`
	}{Data: []*tokenView{}}
	for _, doc := range docs {
		if t, err := decodeToken(doc); err == nil {
			out.Data = append(out.Data, t.view(doc.Revision))
		}
	}
	writeJSON(w, http.StatusOK, &out)
	return nil
}

func (s *Server) getToken(w http.ResponseWriter, r *http.Request) error {
	t, doc, err := s.loadToken(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, t.view(doc.Revision))
	return nil
}

// deleteToken revokes a token: the document and its hash index entry go.
func (s *Server) deleteToken(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if _, _, err := s.loadToken(r.Context(), id); err != nil {
		return err
	}
	if err := s.store.Delete(r.Context(), tokenKind, id, 0); err != nil {
		return storeError(err, "API token", id)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
