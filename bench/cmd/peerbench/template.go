package main

import (
	_ "embed"
	"strings"
)

// benchmarksTemplate is BENCHMARKS.md around the measured part, which
// replaces the line {{figures}}.
//
//go:embed BENCHMARKS.md.tmpl
var benchmarksTemplate string

func fillTemplate(figures string) string {
	return strings.Replace(benchmarksTemplate, "{{figures}}\n", figures, 1)
}
