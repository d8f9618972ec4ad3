package mainlib

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// The admin CLI: `sluice <noun> <verb> [id] [flags]`, a thin client of the admin API
// (xds/admin). It reads SLUICE_URL (default defaultAdminURL) and SLUICE_API_TOKEN.

const defaultAdminURL = "http://127.0.0.1:9000"

// cliNouns are the admin commands, in usage order.
var cliNouns = []*noun{keysNoun, providersNoun, policiesNoun, budgetsNoun, guardrailsNoun, orgsNoun, teamsNoun,
	projectsNoun, principalsNoun, tokensNoun}

func findNoun(name string) *noun {
	for _, n := range cliNouns {
		if n.name == name {
			return n
		}
	}
	return nil
}

// apiClient calls the admin API.
type apiClient struct {
	base  string
	token string
	hc    *http.Client
}

func newAPIClient() (*apiClient, error) {
	base := strings.TrimRight(os.Getenv("SLUICE_URL"), "/")
	if base == "" {
		base = defaultAdminURL
	}
	if u, err := url.Parse(base); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("SLUICE_URL must be an http(s) URL such as " + defaultAdminURL)
	}
	token := strings.TrimSpace(os.Getenv("SLUICE_API_TOKEN"))
	if token == "" {
		return nil, errors.New("SLUICE_API_TOKEN is not set: export the admin token or an API token")
	}
	return &apiClient{base: base, token: token, hc: &http.Client{Timeout: 30 * time.Second}}, nil
}

// apiError is an error answer of the admin API.
type apiError struct {
	Status  int
	Code    string   `json:"code"`
	Message string   `json:"message"`
	Details []string `json:"details"`
}

func (e *apiError) Error() string {
	msg := e.Message
	if len(e.Details) > 1 {
		msg = "invalid request:\n  " + strings.Join(e.Details, "\n  ")
	}
	if e.Code != "" {
		return msg + " (" + e.Code + ")"
	}
	return msg
}

// do sends body (nil for none) and returns the decoded JSON answer, or nil for 204.
func (c *apiClient) do(ctx context.Context, method, path string, body any) (any, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is ours; keep the message short
		}
		return nil, fmt.Errorf("admin API at %s: %w", c.base, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("admin API: reading the answer: %w", err)
	}
	if res.StatusCode >= 400 {
		var eb struct {
			Error apiError `json:"error"`
		}
		if json.Unmarshal(raw, &eb) != nil || eb.Error.Message == "" {
			return nil, fmt.Errorf("admin API: %s", res.Status)
		}
		eb.Error.Status = res.StatusCode
		return nil, &eb.Error
	}
	if res.StatusCode == http.StatusNoContent || len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("admin API: the answer is not JSON: %w", err)
	}
	return v, nil
}

// output renders answers in the chosen format.
type output struct {
	format  string // json or table
	columns []column
	stdout  io.Writer
	stderr  io.Writer
}

// column is one table column: a header and the JSON field it shows.
type column struct{ header, field string }

func (o *output) check() error {
	if o.format != "json" && o.format != "table" {
		return fmt.Errorf("--format %q: want json or table", o.format)
	}
	return nil
}

// one prints a single resource. In table form, a one-time secret goes after the table
// with a reminder; it is the only secret the CLI ever prints.
func (o *output) one(v any) error {
	obj, _ := v.(map[string]any)
	o.warnings(obj)
	if o.format == "json" {
		return o.json(v)
	}
	if err := o.table([]map[string]any{obj}); err != nil {
		return err
	}
	if s, ok := obj["secret"].(string); ok && s != "" {
		fmt.Fprintf(o.stdout, "\nsecret: %s\nThis secret is shown once. Store it now; it cannot be retrieved later.\n", s)
	}
	return nil
}

// list prints the "data" array of a list answer.
func (o *output) list(v any) error {
	obj, _ := v.(map[string]any)
	data, _ := obj["data"].([]any)
	if data == nil {
		data = []any{}
	}
	if o.format == "json" {
		return o.json(data)
	}
	rows := make([]map[string]any, 0, len(data))
	for _, d := range data {
		if m, ok := d.(map[string]any); ok {
			rows = append(rows, m)
		}
	}
	return o.table(rows)
}

func (o *output) json(v any) error {
	enc := json.NewEncoder(o.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (o *output) table(rows []map[string]any) error {
	tw := tabwriter.NewWriter(o.stdout, 0, 0, 2, ' ', 0)
	hdr := make([]string, len(o.columns))
	for i, c := range o.columns {
		hdr[i] = c.header
	}
	fmt.Fprintln(tw, strings.Join(hdr, "\t"))
	for _, r := range rows {
		cells := make([]string, len(o.columns))
		for i, c := range o.columns {
			cells[i] = cell(r[c.field])
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

func (o *output) warnings(obj map[string]any) {
	ws, _ := obj["warnings"].([]any)
	for _, w := range ws {
		fmt.Fprintf(o.stderr, "warning: %v\n", w)
	}
}

// cell formats one table value on one line.
func cell(v any) string {
	switch x := v.(type) {
	case nil:
		return "-"
	case string:
		if x == "" {
			return "-"
		}
		return strings.NewReplacer("\t", " ", "\n", " ").Replace(x)
	case bool:
		if x {
			return "yes"
		}
		return "no"
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = cell(e)
		}
		if len(parts) == 0 {
			return "-"
		}
		return strings.Join(parts, ",")
	case map[string]any:
		b, _ := json.Marshal(x)
		return string(b)
	}
	return fmt.Sprint(v)
}

// parseInterleaved parses flags that may come before or after positional arguments
// ("get vk_1 --format json") and returns the positionals.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// setFlags returns the names of the flags given on the command line.
func setFlags(fs *flag.FlagSet) map[string]bool {
	m := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { m[f.Name] = true })
	return m
}
