package cli

import (
	"strings"

	"github.com/spf13/cobra"

	"outpost.dev/outpost/internal/output"
)

// formatNone is az's `-o none`: the command does its work and prints
// nothing, which scripts use for commands whose result they do not read.
const formatNone = "none"

// formatFlag is the value of -o/--output. It takes the format in any case,
// as az does, and az's coloured variants (jsonc, yamlc) as their plain
// forms: a pipe gets no colour from az either.
type formatFlag struct{ o *output.Options }

func (f formatFlag) String() string { return f.o.Format }
func (f formatFlag) Type() string   { return "format" }

func (f formatFlag) Set(s string) error {
	s = strings.ToLower(strings.TrimSpace(s))
	switch s {
	case "jsonc":
		s = "json"
	case "yamlc":
		s = "yaml"
	}
	f.o.Format = s
	return nil
}

// outputFlag adds -o/--output and --query to a command that prints
// resources. The values are checked by the root's PersistentPreRunE
// (checkOutputFlags), before the command does any work.
func outputFlag(cmd *cobra.Command) *output.Options {
	o := &output.Options{Format: "table"}
	cmd.Flags().VarP(formatFlag{o}, "output", "o", "output format: table, json, yaml, tsv or none")
	cmd.Flags().StringVar(&o.Query, "query", "", "JMESPath query applied to the result, e.g. --query name -o tsv (see https://jmespath.org)")
	return o
}

// checkOutputFlags validates -o and --query of the command about to run.
func checkOutputFlags(cmd *cobra.Command) error {
	f := cmd.Flags().Lookup("output")
	if f == nil {
		return nil
	}
	ff, ok := f.Value.(formatFlag)
	if !ok {
		return nil
	}
	return validOutput(*ff.o)
}

func validOutput(o output.Options) error {
	if o.Format == formatNone {
		o.Format = ""
	}
	return o.Validate()
}

// printResult prints v as the output flags ask; table makes the table of
// the table format.
func printResult(cmd *cobra.Command, o output.Options, v any, table func() output.Table) error {
	if o.Format == formatNone {
		return validOutput(o)
	}
	return output.Print(cmd.OutOrStdout(), o, v, table)
}
