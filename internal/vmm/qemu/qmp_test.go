package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"
)

// Events the guest can cause (RTC_CHANGE, ...) are read and dropped as
// they come, not left to pile up in QEMU; a command still gets its reply.
func TestQMPDrainsEvents(t *testing.T) {
	host, qemu := net.Pipe() // unbuffered: an unread event blocks QEMU's side
	defer host.Close()
	defer qemu.Close()
	go func() {
		r := bufio.NewReader(qemu)
		qemu.Write([]byte(`{"QMP": {"version": {}, "capabilities": []}}` + "\n"))
		r.ReadString('\n') // qmp_capabilities
		qemu.Write([]byte(`{"return": {}}` + "\n"))
		for i := 0; i < 1000; i++ {
			if _, err := qemu.Write([]byte(`{"event": "RTC_CHANGE", "data": {"offset": 1}}` + "\n")); err != nil {
				return
			}
		}
		line, _ := r.ReadString('\n')
		if strings.Contains(line, "query-status") {
			qemu.Write([]byte(`{"event": "RTC_CHANGE"}` + "\n" + `{"return": {"status": "running"}, "id": ` + qmpID(line) + `}` + "\n"))
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q, err := newQMP(ctx, host)
	if err != nil {
		t.Fatal(err)
	}
	ret, err := q.execute(ctx, "query-status")
	if err != nil {
		t.Fatalf("query-status after 1000 events: %v", err)
	}
	if !strings.Contains(string(ret), "running") {
		t.Errorf("reply %s", ret)
	}
}

// qmpID returns the id of a command line as QEMU echoes it.
func qmpID(line string) string {
	var m struct {
		ID json.RawMessage `json:"id"`
	}
	json.Unmarshal([]byte(line), &m)
	return string(m.ID)
}

// The answer to a command that gave up waiting comes late: the next
// command must not take it for its own.
func TestQMPLateAnswerNotTakenByTheNext(t *testing.T) {
	host, qemu := net.Pipe()
	defer host.Close()
	defer qemu.Close()
	go func() {
		r := bufio.NewReader(qemu)
		qemu.Write([]byte(`{"QMP": {"version": {}, "capabilities": []}}` + "\n"))
		r.ReadString('\n')
		qemu.Write([]byte(`{"return": {}}` + "\n"))
		first, _ := r.ReadString('\n') // left unanswered until the next comes
		second, _ := r.ReadString('\n')
		qemu.Write([]byte(`{"return": {"running": false}, "id": ` + qmpID(first) + `}` + "\n"))
		qemu.Write([]byte(`{"return": {"running": true}, "id": ` + qmpID(second) + `}` + "\n"))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q, err := newQMP(ctx, host)
	if err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	if _, err := q.execute(short, "query-status"); err == nil {
		t.Fatal("first command answered")
	}
	cancelShort()
	ret, err := q.execute(ctx, "query-status")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ret), "true") {
		t.Fatalf("the second command got the first's answer: %s", ret)
	}
}
