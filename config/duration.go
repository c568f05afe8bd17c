package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration that reads Go duration strings plus a "d" unit
// for days ("90d", "1d12h"), since token lifetimes are naturally in days.
type Duration struct {
	time.Duration
}

// UnmarshalText implements encoding.TextUnmarshaler for TOML decoding.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText renders the duration the way it can be read back.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(FormatDuration(d.Duration)), nil
}

// ParseDuration parses a Go duration string that may start with a number of
// days ("90d", "2d3h"). Negative durations are refused: no setting here has a
// meaning for them.
func ParseDuration(s string) (time.Duration, error) {
	orig := s
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("invalid duration %q", orig)
	}
	var total time.Duration
	if i := strings.IndexByte(s, 'd'); i > 0 {
		days, err := strconv.ParseUint(s[:i], 10, 32)
		if err != nil || days > 100000 {
			return 0, fmt.Errorf("invalid duration %q", orig)
		}
		total = time.Duration(days) * 24 * time.Hour
		s = s[i+1:]
		if s == "" {
			return total, nil
		}
	}
	rest, err := time.ParseDuration(s)
	if err != nil || rest < 0 || total+rest < total {
		// total+rest < total: past time.Duration's 292 years, where the
		// sum would turn negative (and a token's lifetime the default).
		return 0, fmt.Errorf("invalid duration %q", orig)
	}
	return total + rest, nil
}

// FormatDuration prints whole days with "d", the rest as Go does.
func FormatDuration(d time.Duration) string {
	const day = 24 * time.Hour
	if d >= day && d%day == 0 {
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	return d.String()
}
