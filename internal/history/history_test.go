package history

import (
	"testing"
	"time"
)

func TestCheckerRules(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	initial := func(key string) (string, bool) { return "init", key != "absent" }
	const T = 100 * time.Millisecond

	cases := []struct {
		name   string
		writes []Write
		read   Read
		bad    bool
	}{
		{"initial before any write", nil, Read{Key: "k", Value: "init", Found: true, Start: at(0)}, false},
		{"value never written", nil, Read{Key: "k", Value: "bogus", Found: true, Start: at(0)}, true},
		{"old value within T", []Write{{Key: "k", Value: "a", Start: at(0), End: at(10)}},
			Read{Key: "k", Value: "init", Found: true, Start: at(100)}, false},
		{"old value past T", []Write{{Key: "k", Value: "a", Start: at(0), End: at(10)}},
			Read{Key: "k", Value: "init", Found: true, Start: at(111)}, true},
		{"newest value", []Write{{Key: "k", Value: "a", Start: at(0), End: at(10)}, {Key: "k", Value: "b", Start: at(20), End: at(30)}},
			Read{Key: "k", Value: "b", Found: true, Start: at(500)}, false},
		{"superseded value past T", []Write{{Key: "k", Value: "a", Start: at(0), End: at(10)}, {Key: "k", Value: "b", Start: at(20), End: at(30)}},
			Read{Key: "k", Value: "a", Found: true, Start: at(500)}, true},
		{"concurrent writes either order", []Write{{Key: "k", Value: "a", Start: at(0), End: at(30)}, {Key: "k", Value: "b", Start: at(10), End: at(20)}},
			Read{Key: "k", Value: "a", Found: true, Start: at(500)}, false},
		{"not found after delete", []Write{{Key: "k", Value: "", Start: at(0), End: at(10)}},
			Read{Key: "k", Found: false, Start: at(500)}, false},
		{"not found without delete", nil, Read{Key: "k", Found: false, Start: at(0)}, true},
		{"absent initial", nil, Read{Key: "absent", Found: false, Start: at(0)}, false},
		{"value after delete past T", []Write{{Key: "k", Value: "a", Start: at(0), End: at(10)}, {Key: "k", Value: "", Start: at(20), End: at(30)}},
			Read{Key: "k", Value: "a", Found: true, Start: at(500)}, true},
		{"other key irrelevant", []Write{{Key: "x", Value: "a", Start: at(0), End: at(10)}},
			Read{Key: "k", Value: "init", Found: true, Start: at(500)}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := NewChecker(T, initial)
			for _, w := range tc.writes {
				c.AddWrite(w)
			}
			ok := c.CheckRead(tc.read)
			if ok == tc.bad {
				t.Fatalf("CheckRead = %v, want violation=%v; violations: %v", ok, tc.bad, c.Violations())
			}
			if got := len(c.Violations()); (got == 1) != tc.bad || c.Reads() != 1 {
				t.Fatalf("violations=%d reads=%d", got, c.Reads())
			}
		})
	}
}
