package backend

import "testing"

// TestSharedParamsAreCopiedBeforeAChange: sessions with equal
// ParameterStatus values share one map, and a change one backend reports
// reaches that session only.
func TestSharedParamsAreCopiedBeforeAChange(t *testing.T) {
	a := &Session{Params: map[string]string{"TimeZone": "UTC", "DateStyle": "ISO, MDY"}}
	b := &Session{Params: map[string]string{"TimeZone": "UTC", "DateStyle": "ISO, MDY"}}
	a.ShareParams()
	b.ShareParams()
	if !a.paramsShared || !b.paramsShared {
		t.Fatal("equal parameters were not shared")
	}
	a.SetParam("TimeZone", "UTC") // unchanged: stays shared
	if !a.paramsShared {
		t.Fatal("an unchanged value copied the map")
	}
	a.SetParam("TimeZone", "Europe/Berlin")
	if a.Params["TimeZone"] != "Europe/Berlin" || b.Params["TimeZone"] != "UTC" {
		t.Fatalf("a change leaked between sessions: a=%v b=%v", a.Params, b.Params)
	}
	c := &Session{Params: map[string]string{"TimeZone": "UTC", "DateStyle": "ISO, MDY"}}
	c.ShareParams()
	if c.Params["TimeZone"] != "UTC" {
		t.Fatalf("the shared copy was changed: %v", c.Params)
	}
	var d Session
	d.SetParam("x", "1")
	if d.Params["x"] != "1" {
		t.Fatal("SetParam on a session without parameters")
	}
}
