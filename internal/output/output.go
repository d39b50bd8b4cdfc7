// Package output prints resources the way every outpost command does:
// -o table (default), json or yaml.
package output

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"sigs.k8s.io/yaml"
)

// Formats lists the values -o accepts.
var Formats = []string{"table", "json", "yaml"}

// Validate checks an -o value before any work is done.
func Validate(format string) error {
	for _, f := range Formats {
		if f == format {
			return nil
		}
	}
	return fmt.Errorf("-o %q: unknown output format; use one of %s", format, strings.Join(Formats, ", "))
}

// Table is a header and rows for the table format.
type Table struct {
	Header []string
	Rows   [][]string
}

// Print writes v as json or yaml, or the table for the table format.
func Print(w io.Writer, format string, v any, table func() Table) error {
	switch format {
	case "json":
		data, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", data)
		return err
	case "yaml":
		data, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	case "table", "":
		t := table()
		tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
		fmt.Fprintln(tw, strings.Join(t.Header, "\t"))
		for _, r := range t.Rows {
			fmt.Fprintln(tw, strings.Join(r, "\t"))
		}
		return tw.Flush()
	}
	return Validate(format)
}
