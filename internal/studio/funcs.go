package studio

import (
	"fmt"
	"html/template"
	"strings"
	"time"
)

// funcs are the templates' helpers.
var funcs = template.FuncMap{
	"when":    when,
	"ago":     ago,
	"state":   stateClass,
	"join":    strings.Join,
	"traffic": trafficOf,
	"size":    size,
	"plural": func(n int, one, many string) string {
		if n == 1 {
			return one
		}
		return many
	},
}

// when is a time as the pages show it: UTC, to the second.
func when(t any) string {
	switch t := t.(type) {
	case time.Time:
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	case *time.Time:
		if t == nil {
			return ""
		}
		return when(*t)
	}
	return fmt.Sprint(t)
}

// ago is how long ago t was, to the second.
func ago(t *time.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return time.Since(*t).Round(time.Second).String() + " ago"
}

// stateClass is the CSS class of a state: good, bad or in progress.
func stateClass(state string) string {
	switch state {
	case "Succeeded", "Completed", "Installed", "Connected":
		return "state ok"
	case "Failed", "Offline", "Canceled":
		return "state bad"
	case "":
		return "state"
	}
	return "state busy"
}

// size is a byte count for people.
func size(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
