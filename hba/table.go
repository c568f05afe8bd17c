package hba

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Columns are the headings of the rule table, as `pgwarden check` and the
// admin console's SHOW HBA print it.
var Columns = []string{"#", "protocol", "address", "ssl", "database", "user", "method", "options", "source"}

// Row renders the rule as the cells of the rule table.
func (rule *Rule) Row() []string {
	var o []string
	if rule.ClientCert != "" {
		o = append(o, "clientcert="+rule.ClientCert)
	}
	if rule.Issuer != "" {
		o = append(o, "issuer="+rule.Issuer)
	}
	if rule.Scope != "" {
		o = append(o, "scope="+strconv.Quote(rule.Scope))
	}
	opts := strings.Join(o, " ")
	return []string{
		fmt.Sprint(rule.Number), string(rule.Protocol), joinPatterns(rule.Addresses), string(rule.SSL),
		joinPatterns(rule.Databases), joinPatterns(rule.Users), string(rule.Method), opts, rule.Source,
	}
}

// WriteTable prints the rules as an aligned table.
func (rs Rules) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(Columns, "\t"))
	for _, r := range rs {
		fmt.Fprintln(tw, strings.Join(r.Row(), "\t"))
	}
	return tw.Flush()
}
