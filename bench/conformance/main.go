// Command conformance summarises the JUnit report of an upstream e2e run
// (scripts/conformance.sh, `make conformance`): passed and failed tests per
// area and in total, then every failing test with the first line of its
// failure. It exits 1 when a test failed.
//
//	go run ./bench/conformance -areas "ConfigMap,Secrets,..." junit.xml
package main

import (
	"encoding/xml"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"text/tabwriter"
)

// The parts of Ginkgo's JUnit report that matter here.
type report struct {
	Suites []struct {
		Cases []testCase `xml:"testcase"`
	} `xml:"testsuite"`
}

type testCase struct {
	Name    string `xml:"name,attr"`
	Status  string `xml:"status,attr"`
	Failure *struct {
		Message string `xml:"message,attr"`
		Text    string `xml:",chardata"`
	} `xml:"failure"`
	Error *struct {
		Message string `xml:"message,attr"`
		Text    string `xml:",chardata"`
	} `xml:"error"`
}

type result struct {
	area, name, why string
	passed          bool
}

func main() {
	areaList := flag.String("areas", "", "comma-separated areas, as they follow [sig-x] in test names")
	flag.Parse()
	if flag.NArg() != 1 || *areaList == "" {
		fmt.Fprintln(os.Stderr, "usage: conformance -areas A,B,... junit.xml")
		os.Exit(2)
	}
	f, err := os.Open(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	defer f.Close()
	results, err := summarise(f, strings.Split(*areaList, ","))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if failed := printSummary(os.Stdout, results, strings.Split(*areaList, ",")); failed > 0 {
		os.Exit(1)
	}
}

var sigPrefix = regexp.MustCompile(`^(\[It\] )?\[sig-[a-z-]+\] `)

// summarise reads the report: tests that ran (not skipped or pending), each
// under the first area its name starts with (after "[sig-x] "), "other" if none.
func summarise(r io.Reader, areas []string) ([]result, error) {
	var rep report
	if err := xml.NewDecoder(r).Decode(&rep); err != nil {
		return nil, fmt.Errorf("read JUnit report: %w", err)
	}
	var out []result
	for _, s := range rep.Suites {
		for _, c := range s.Cases {
			switch c.Status {
			case "skipped", "pending":
				continue
			}
			loc := sigPrefix.FindStringIndex(c.Name)
			if loc == nil {
				continue // Ginkgo's own suite nodes ([BeforeSuite], [ReportAfterSuite], ...)
			}
			name := strings.TrimPrefix(c.Name, "[It] ")
			// Ginkgo appends the spec's labels ("[sig-node, Conformance]"), which repeat the name's.
			if i := strings.LastIndex(name, " ["); i > 0 && strings.HasSuffix(name, "]") && strings.Contains(name[i:], ", ") {
				name = name[:i]
			}
			res := result{area: "other", name: name, passed: c.Status == "passed"}
			rest := c.Name[loc[1]:]
			// The longest area that matches wins ("Pods" must not take "Pods Extended"
			// from an area of that name, should one be listed).
			for _, a := range areas {
				if strings.HasPrefix(rest, a) && (res.area == "other" || len(a) > len(res.area)) {
					res.area = a
				}
			}
			if !res.passed {
				res.why = c.Status
				switch {
				case c.Failure != nil:
					res.why = firstLine(c.Failure.Message, c.Failure.Text, c.Status)
				case c.Error != nil:
					res.why = firstLine(c.Error.Message, c.Error.Text, c.Status)
				}
			}
			out = append(out, res)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no test ran according to the report")
	}
	return out, nil
}

func firstLine(candidates ...string) string {
	for _, s := range candidates {
		if s = strings.TrimSpace(s); s != "" {
			line, _, _ := strings.Cut(s, "\n")
			return line
		}
	}
	return ""
}

// printSummary writes the table and the failing tests; it returns how many failed.
func printSummary(w io.Writer, results []result, areas []string) int {
	type count struct{ passed, failed int }
	per := map[string]*count{}
	total := count{}
	for _, r := range results {
		c := per[r.area]
		if c == nil {
			c = &count{}
			per[r.area] = c
		}
		if r.passed {
			c.passed++
			total.passed++
		} else {
			c.failed++
			total.failed++
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "area\tpassed\tfailed\t")
	for _, a := range append(append([]string{}, areas...), "other") {
		if c := per[a]; c != nil {
			fmt.Fprintf(tw, "%s\t%d\t%d\t\n", a, c.passed, c.failed)
		}
	}
	fmt.Fprintf(tw, "total\t%d\t%d\t\n", total.passed, total.failed)
	tw.Flush()
	fmt.Fprintf(w, "\n%d of %d passed (%.0f %%)\n", total.passed, total.passed+total.failed,
		100*float64(total.passed)/float64(total.passed+total.failed))
	var failing []result
	for _, r := range results {
		if !r.passed {
			failing = append(failing, r)
		}
	}
	sort.Slice(failing, func(i, j int) bool {
		if failing[i].area != failing[j].area {
			return failing[i].area < failing[j].area
		}
		return failing[i].name < failing[j].name
	})
	if len(failing) > 0 {
		fmt.Fprintf(w, "\nfailing tests:\n")
		for _, r := range failing {
			fmt.Fprintf(w, "- %s\n    %s\n", r.name, r.why)
		}
	}
	return total.failed
}
