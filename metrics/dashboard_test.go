package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

// Every metric the Grafana dashboard (packaging/grafana-dashboard.json)
// queries is one pgwarden exports.
func TestTheDashboardQueriesOnlyMetricsThatExist(t *testing.T) {
	b, err := os.ReadFile("../packaging/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Query any `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	m := New()
	m.RegisterPool(func() PoolFigures { return PoolFigures{} })
	m.RegisterConsoleSessions(func() int { return 0 })
	exported := map[string]bool{}
	for _, n := range m.Names() {
		exported[n] = true
	}
	for _, want := range []string{"pgwarden_auth_duration_seconds", "pgwarden_http_request_duration_seconds",
		"pgwarden_backend_connect_duration_seconds", "pgwarden_backend_acquire_duration_seconds", "pgwarden_relayed_bytes_total"} {
		if !exported[want] {
			t.Fatalf("%s is not exported", want)
		}
	}
	name := regexp.MustCompile(`\b(pgwarden_[a-z_]+|process_[a-z_]+|go_[a-z_]+)\b`)
	var exprs []string
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Fatalf("panel %q queries nothing", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		if s, ok := v.Query.(string); ok {
			exprs = append(exprs, s)
		}
	}
	checked := 0
	for _, e := range exprs {
		for _, n := range name.FindAllString(e, -1) {
			base := n
			for _, suffix := range []string{"_bucket", "_count", "_sum"} {
				if strings.HasSuffix(n, suffix) && exported[strings.TrimSuffix(n, suffix)] {
					base = strings.TrimSuffix(n, suffix)
				}
			}
			if !exported[base] {
				t.Errorf("the dashboard queries %s, which pgwarden does not export (in %s)", n, e)
			}
			checked++
		}
	}
	if checked < 15 {
		t.Fatalf("only %d metric references found: the test does not read the dashboard", checked)
	}
}
