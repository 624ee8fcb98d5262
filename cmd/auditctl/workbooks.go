package main

import (
	"context"
	"regexp"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	auditexport "github.com/auditexport/auditexport/clients/go"
	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
)

type workbooksCmd struct {
	List    wbListCmd    `cmd:"" aliases:"ls" help:"List saved workbooks."`
	Get     wbGetCmd     `cmd:"" help:"Show a workbook and its elements."`
	Explore wbExploreCmd `cmd:"" help:"Explore a connection's table: an unsaved workbook (an exploration) with one element."`
	SaveAs  wbSaveAsCmd  `cmd:"" name:"save-as" help:"Save a workbook or exploration under a name."`
	Update  wbUpdateCmd  `cmd:"" help:"Rename or move a workbook, or change an element (columns, filters, time range, sort)."`
	Delete  wbDeleteCmd  `cmd:"" aliases:"rm" help:"Delete a workbook (refused while it has schedules, unless --force)."`
	Query   wbQueryCmd   `cmd:"" help:"Show an element's rows."`
}

type connectionsCmd struct {
	List connListCmd `cmd:"" aliases:"ls" help:"List connections, their tables and whether you have access."`
}

type connListCmd struct{ listFlags }

func (c *connListCmd) Run(e *env) error {
	return e.list(c.listFlags, func(ctx context.Context, cl *auditexport.Client, token string) (proto.Message, error) {
		return cl.Workbooks.ListConnections(ctx, &pb.ListConnectionsRequest{PageSize: c.PageSize, PageToken: token})
	})
}

type wbListCmd struct {
	listFlags
	Folder string `name:"folder" help:"Only workbooks in this folder."`
}

func (c *wbListCmd) Run(e *env) error {
	return e.list(c.listFlags, func(ctx context.Context, cl *auditexport.Client, token string) (proto.Message, error) {
		return cl.Workbooks.ListWorkbooks(ctx, &pb.ListWorkbooksRequest{PageSize: c.PageSize, PageToken: token, Folder: c.Folder})
	})
}

type wbGetCmd struct {
	ID string `arg:"" help:"Workbook id (wb_…)."`
}

func (c *wbGetCmd) Run(e *env) error {
	return e.do(func(ctx context.Context, cl *auditexport.Client) (proto.Message, error) {
		return cl.Workbooks.GetWorkbook(ctx, &pb.GetWorkbookRequest{Id: c.ID})
	})
}

type wbExploreCmd struct {
	Connection string `name:"connection" default:"con_audit_logs" help:"Connection id."`
	Table      string `name:"table" default:"AUDIT_LOGS" help:"Table name."`
}

func (c *wbExploreCmd) Run(e *env) error {
	return e.do(func(ctx context.Context, cl *auditexport.Client) (proto.Message, error) {
		return cl.Workbooks.ExploreTable(ctx, &pb.ExploreTableRequest{ConnectionId: c.Connection, Table: c.Table})
	})
}

type wbSaveAsCmd struct {
	ID     string `arg:"" help:"Workbook or exploration id (wb_…)."`
	Name   string `name:"name" required:"" help:"Workbook name."`
	Folder string `name:"folder" help:"Folder."`
}

func (c *wbSaveAsCmd) Run(e *env) error {
	return e.do(func(ctx context.Context, cl *auditexport.Client) (proto.Message, error) {
		return cl.Workbooks.SaveWorkbookAs(ctx, &pb.SaveWorkbookAsRequest{Id: c.ID, Name: c.Name, Folder: c.Folder})
	})
}

type wbUpdateCmd struct {
	ID string `arg:"" help:"Workbook id (wb_…)."`
	fromFile
	Name   string `name:"name" help:"New name."`
	Folder string `name:"folder" help:"New folder."`

	Element     string        `name:"element" group:"element" help:"Element to change (default: the workbook's only element)."`
	ElementName string        `name:"element-name" group:"element" help:"New element name."`
	Columns     []string      `name:"columns" group:"element" sep:"," help:"Columns to keep, in order (empty: all)."`
	Filter      []string      `name:"filter" group:"element" help:"Replace the filters (repeatable): COL=V, COL!=V, COL>V, COL<V, COL~V (contains), or COL:OPERATOR:V1,V2 (e.g. EVENT_TYPE:IN:A,B)."`
	Last        time.Duration `name:"last" group:"element" help:"Only rows of the last DURATION (e.g. 168h) by REQUEST_TIME; 0 removes the range."`
	Sort        []string      `name:"sort" group:"element" help:"Sort keys (repeatable): COL or COL:asc ascending, COL:desc descending."`
}

var elementFlags = []string{"element-name", "columns", "filter", "last", "sort"}

func (c *wbUpdateCmd) Run(e *env) error {
	req := &pb.UpdateWorkbookRequest{}
	if err := c.load(e, req); err != nil {
		return err
	}
	if req.Workbook == nil {
		req.Workbook = &pb.Workbook{}
	}
	req.Workbook.Id = c.ID
	setIfGiven(e, "name", &req.Workbook.Name, c.Name)
	setIfGiven(e, "folder", &req.Workbook.Folder, c.Folder)
	req.UpdateMask = e.updateMask(req.UpdateMask, maskField{"name", "name"}, maskField{"folder", "folder"})
	return e.do(func(ctx context.Context, cl *auditexport.Client) (proto.Message, error) {
		if e.changesElement() {
			// Elements are replaced as a whole list: start from the stored ones.
			cur, err := cl.Workbooks.GetWorkbook(ctx, &pb.GetWorkbookRequest{Id: c.ID})
			if err != nil {
				return nil, err
			}
			el, err := pickElement(cur.GetWorkbook(), c.Element)
			if err != nil {
				return nil, err
			}
			if err := c.editElement(e, el); err != nil {
				return nil, err
			}
			req.Workbook.Elements = cur.GetWorkbook().GetElements()
			req.UpdateMask.Paths = append(req.UpdateMask.Paths, "elements")
		}
		if len(req.UpdateMask.GetPaths()) == 0 {
			return nil, usagef("nothing to update: give --name, --folder, an element flag or --from-file")
		}
		return cl.Workbooks.UpdateWorkbook(ctx, req)
	})
}

func (e *env) changesElement() bool {
	for _, f := range elementFlags {
		if e.given[f] {
			return true
		}
	}
	return false
}

func (c *wbUpdateCmd) editElement(e *env, el *pb.Element) error {
	setIfGiven(e, "element-name", &el.Name, c.ElementName)
	setIfGiven(e, "columns", &el.Columns, c.Columns)
	if e.given["filter"] {
		el.Filters = nil
		for _, f := range c.Filter {
			pf, err := parseFilter(f)
			if err != nil {
				return err
			}
			el.Filters = append(el.Filters, pf)
		}
	}
	if e.given["last"] {
		el.RelativeTimeRange = nil
		if c.Last > 0 {
			el.RelativeTimeRange = &pb.RelativeTimeRange{Column: "REQUEST_TIME", Last: durationpb.New(c.Last)}
		}
	}
	if e.given["sort"] {
		el.Sort = nil
		for _, s := range c.Sort {
			col, dir, _ := strings.Cut(s, ":")
			if dir != "" && dir != "asc" && dir != "desc" {
				return usagef("--sort %q: want COL, COL:asc or COL:desc", s)
			}
			el.Sort = append(el.Sort, &pb.SortKey{Column: col, Descending: dir == "desc"})
		}
	}
	return nil
}

// plainColumn is a column name as the colon form COL:OPERATOR:V1,V2 takes it.
var plainColumn = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// parseFilter reads the --filter shorthand. The colon form is taken only
// when a plain column name and an operator stand before the first two
// colons, so values with colons (REQUEST_TIME>2026-01-01T10:00:00Z) keep
// the symbol forms; of those the longest are tried first so "!=" is not
// taken for "=".
func parseFilter(s string) (*pb.Filter, error) {
	var opErr error
	if col, rest, ok := strings.Cut(s, ":"); ok && plainColumn.MatchString(col) {
		if op, vals, ok := strings.Cut(rest, ":"); ok {
			n, err := parseEnum(pb.FilterOperator(0).Descriptor(), "filter", op)
			if err == nil {
				return &pb.Filter{Column: col, Operator: pb.FilterOperator(n), Values: strings.Split(vals, ",")}, nil
			}
			opErr = err
		}
	}
	for _, o := range []struct {
		sym string
		op  pb.FilterOperator
	}{
		{"!=", pb.FilterOperator_FILTER_OPERATOR_NOT_EQUALS}, {"=", pb.FilterOperator_FILTER_OPERATOR_EQUALS},
		{">", pb.FilterOperator_FILTER_OPERATOR_GREATER_THAN}, {"<", pb.FilterOperator_FILTER_OPERATOR_LESS_THAN},
		{"~", pb.FilterOperator_FILTER_OPERATOR_CONTAINS},
	} {
		if col, val, ok := strings.Cut(s, o.sym); ok && col != "" {
			return &pb.Filter{Column: strings.TrimSpace(col), Operator: o.op, Values: []string{strings.TrimSpace(val)}}, nil
		}
	}
	if opErr != nil {
		return nil, opErr // COL:OPERATOR:V with an unknown operator
	}
	return nil, usagef("--filter %q: want COL=V, COL!=V, COL>V, COL<V, COL~V or COL:OPERATOR:V1,V2", s)
}

// pickElement finds the element by id, or the only one when id is empty:
// explorations have exactly one, so most commands need no --element.
func pickElement(wb *pb.Workbook, id string) (*pb.Element, error) {
	els := wb.GetElements()
	if id == "" {
		if len(els) == 1 {
			return els[0], nil
		}
		return nil, usagef("workbook %s has %d elements: choose one with --element", wb.GetId(), len(els))
	}
	for _, el := range els {
		if el.GetId() == id || el.GetName() == id {
			return el, nil
		}
	}
	return nil, usagef("workbook %s has no element %q", wb.GetId(), id)
}

type wbDeleteCmd struct {
	ID    string `arg:"" help:"Workbook id (wb_…)."`
	Force bool   `name:"force" help:"Delete its schedules too."`
}

func (c *wbDeleteCmd) Run(e *env) error {
	return e.do(func(ctx context.Context, cl *auditexport.Client) (proto.Message, error) {
		return cl.Workbooks.DeleteWorkbook(ctx, &pb.DeleteWorkbookRequest{Id: c.ID, Force: c.Force})
	})
}

type wbQueryCmd struct {
	Workbook  string `arg:"" help:"Workbook id (wb_…)."`
	Element   string `arg:"" optional:"" help:"Element id (el_…); default: the workbook's only element."`
	PageSize  int32  `name:"page-size" default:"20" help:"Rows per page."`
	PageToken string `name:"page-token" help:"Continue from a previous page."`
}

func (c *wbQueryCmd) Run(e *env) error {
	return e.do(func(ctx context.Context, cl *auditexport.Client) (proto.Message, error) {
		el := c.Element
		if el == "" {
			wb, err := cl.Workbooks.GetWorkbook(ctx, &pb.GetWorkbookRequest{Id: c.Workbook})
			if err != nil {
				return nil, err
			}
			pick, err := pickElement(wb.GetWorkbook(), "")
			if err != nil {
				return nil, err
			}
			el = pick.GetId()
		}
		return cl.Workbooks.QueryElement(ctx, &pb.QueryElementRequest{WorkbookId: c.Workbook, ElementId: el, PageSize: c.PageSize, PageToken: c.PageToken})
	})
}
