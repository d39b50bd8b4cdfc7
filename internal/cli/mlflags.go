package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"outpost.dev/outpost/internal/artifacts"
	"outpost.dev/outpost/internal/client"
	"outpost.dev/outpost/internal/mlyaml"
)

// wsFlags are -g and -w, which every ml command takes.
type wsFlags struct{ rg, ws string }

func (f *wsFlags) add(c *cobra.Command) {
	c.Flags().StringVarP(&f.rg, "resource-group", "g", "", "resource group")
	c.Flags().StringVarP(&f.ws, "workspace-name", "w", "", "workspace name")
	_ = c.MarkFlagRequired("resource-group")
	_ = c.MarkFlagRequired("workspace-name")
}

func (f *wsFlags) path() wsPath { return wsPath{rg: f.rg, ws: f.ws} }

// ids is the tail of a command line naming a resource of the workspace,
// for the commands messages suggest.
func (f *wsFlags) ids(name string) string {
	return " --name " + shellQuote(name) + " --workspace-name " + shellQuote(f.ws) + " --resource-group " + shellQuote(f.rg)
}

// enumFlag is a flag with a fixed set of values, taken in any case as az
// takes them and kept in the spelling of the set.
type enumFlag struct {
	v       *string
	allowed []string
}

func (e enumFlag) String() string { return *e.v }
func (e enumFlag) Type() string   { return "string" }

func (e enumFlag) Set(s string) error {
	for _, a := range e.allowed {
		if strings.EqualFold(strings.TrimSpace(s), a) {
			*e.v = a
			return nil
		}
	}
	return fmt.Errorf("%q is not allowed: use one of %s", s, strings.Join(e.allowed, ", "))
}

func enumVar(c *cobra.Command, v *string, name, short, value, usage string, allowed ...string) {
	*v = value
	c.Flags().VarP(enumFlag{v, allowed}, name, short, usage+": "+strings.Join(allowed, ", ")+" (in any case)")
}

// loadDoc reads a YAML document (a job, an environment, a data asset) and
// applies the --set overrides to it, in order.
func loadDoc(file string, sets []string) (*mlyaml.Doc, map[string]any, error) {
	data, err := os.ReadFile(file)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, nil, fmt.Errorf("--file %s: no such file", file)
	case err != nil:
		return nil, nil, fmt.Errorf("--file %s: %w", file, err)
	}
	doc, err := mlyaml.Load(file, data)
	if err != nil {
		return nil, nil, err
	}
	for _, s := range sets {
		if err := doc.Set(s); err != nil {
			return nil, nil, err
		}
	}
	m, err := docMap(doc)
	if err != nil {
		return nil, nil, err
	}
	return doc, m, nil
}

// explain points an error about a field of doc at its line; an error
// without a line names the file at least.
func explain(doc *mlyaml.Doc, err error) error {
	e := doc.Explain(err)
	if e == nil || strings.HasPrefix(e.Error(), doc.File()) {
		return e
	}
	return fmt.Errorf("%s: %w", doc.File(), e)
}

// docMap is the document as generic JSON, numbers kept as written.
func docMap(doc *mlyaml.Doc) (map[string]any, error) {
	data, err := doc.JSON()
	if err != nil {
		return nil, err
	}
	v, err := decodeGeneric(data)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("the document must be a mapping of fields")
	}
	return m, nil
}

func decodeGeneric(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// loadYAMLFile reads a YAML file that is inlined in a document (an
// environment file, a conda file).
func loadYAMLFile(file string) (any, error) {
	data, err := os.ReadFile(file)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("%s: no such file (a relative path is taken from the folder of the YAML file naming it)", file)
	case err != nil:
		return nil, err
	}
	doc, err := mlyaml.Load(file, data)
	if err != nil {
		return nil, err
	}
	js, err := doc.JSON()
	if err != nil {
		return nil, err
	}
	return decodeGeneric(js)
}

// artifactsClient uploads to and downloads from the workspace's datastore
// with the login of ws, reporting long transfers on progress.
func artifactsClient(ws *client.Client, p wsPath, progress io.Writer) *artifacts.Client {
	c := ws.Artifacts(p.rg, p.ws)
	c.Progress = progress
	return c
}
