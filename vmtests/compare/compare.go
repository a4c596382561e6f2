// Package compare puts runs of the same guest tests on different kernels
// side by side: typically the unpatched baseline and the series. On the
// baseline every test that needs rings must skip with ENOPROTOOPT and
// every other test must pass; on the series every test must pass or skip.
//
//	t := compare.New([]string{"baseline", "debug"}, []*suite.Outcome{base, patched})
//	fmt.Print(t)
//	if probs := t.Problems(); len(probs) > 0 { ... }
//
// It compares outcomes; it does not run anything (nlmmap-compare does).
package compare

import (
	"fmt"
	"sort"
	"strings"

	"github.com/nlmmap/nlmmap/vmtests/suite"
)

// Baseline is the column name Problems holds to the baseline's rules.
const Baseline = "baseline"

// Cell is one test's result on one kernel.
type Cell struct {
	Result string // PASS, FAIL, SKIP, or "" when the run did not have it
	Reason string
}

// Row is one guest test across the kernels.
type Row struct {
	Name  string // <package>/<Test>
	Cells []Cell
}

// Table is the comparison.
type Table struct {
	Columns []string
	Rows    []Row
	// Summaries are each run's one-line summary.
	Summaries []string
}

// New builds the table of the outcomes, one column each, rows sorted by
// test name.
func New(columns []string, outs []*suite.Outcome) *Table {
	t := &Table{Columns: columns}
	idx := map[string]int{}
	for c, o := range outs {
		t.Summaries = append(t.Summaries, o.Summary())
		for _, v := range o.Verdicts() {
			name := v.Name + "/" + v.Test
			i, ok := idx[name]
			if !ok {
				i = len(t.Rows)
				idx[name] = i
				t.Rows = append(t.Rows, Row{Name: name, Cells: make([]Cell, len(outs))})
			}
			t.Rows[i].Cells[c] = Cell{Result: v.Result(), Reason: v.Reason()}
		}
	}
	sort.Slice(t.Rows, func(i, j int) bool { return t.Rows[i].Name < t.Rows[j].Name })
	return t
}

// noRings reports whether a skip message says the kernel answered
// ENOPROTOOPT, by name or by its strerror text.
func noRings(reason string) bool {
	return strings.Contains(reason, "ENOPROTOOPT") || strings.Contains(reason, "protocol not available")
}

// Problems lists what breaks the rules: a failure anywhere, a test missing
// from a run, and on the baseline a skip that does not name ENOPROTOOPT.
func (t *Table) Problems() []string {
	var out []string
	for _, r := range t.Rows {
		for c, cell := range r.Cells {
			col := t.Columns[c]
			switch {
			case cell.Result == "":
				out = append(out, fmt.Sprintf("%s: did not run on %s", r.Name, col))
			case cell.Result == suite.Fail:
				out = append(out, fmt.Sprintf("%s: FAIL on %s: %s", r.Name, col, cell.Reason))
			case cell.Result == suite.Skip && col == Baseline && !noRings(cell.Reason):
				out = append(out, fmt.Sprintf("%s: skips on %s for another reason than ENOPROTOOPT: %s", r.Name, col, cell.Reason))
			}
		}
	}
	return out
}

// String is the side-by-side table: one row per test, a "!" after each
// result that breaks the rules, and the runs' summaries.
func (t *Table) String() string {
	cells := make([][]string, len(t.Rows))
	widths := make([]int, len(t.Columns)+1)
	widths[0] = len("guest test")
	for i, c := range t.Columns {
		widths[i+1] = len(c)
	}
	for i, r := range t.Rows {
		cells[i] = append(cells[i], r.Name)
		for c, cell := range r.Cells {
			res := cell.Result
			baseline := t.Columns[c] == Baseline
			switch {
			case res == "":
				res = "- !"
			case res == suite.Fail:
				res += " !"
			case res == suite.Skip && baseline && noRings(cell.Reason):
				res = "SKIP (ENOPROTOOPT)"
			case res == suite.Skip && baseline:
				res += " !"
			}
			cells[i] = append(cells[i], res)
		}
		for c, v := range cells[i] {
			if len(v) > widths[c] {
				widths[c] = len(v)
			}
		}
	}
	var b strings.Builder
	line := func(vs []string) {
		var l strings.Builder
		for c, v := range vs {
			fmt.Fprintf(&l, "%-*s  ", widths[c], v)
		}
		b.WriteString(strings.TrimRight(l.String(), " ") + "\n")
	}
	line(append([]string{"guest test"}, t.Columns...))
	for _, row := range cells {
		line(row)
	}
	for i, s := range t.Summaries {
		fmt.Fprintf(&b, "%s: %s\n", t.Columns[i], s)
	}
	return b.String()
}
