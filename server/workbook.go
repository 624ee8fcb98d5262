package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/element"
	"github.com/auditexport/auditexport/ent/workbook"
	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
	"github.com/auditexport/auditexport/internal/auditlog"
	"github.com/auditexport/auditexport/internal/auth"
	"github.com/auditexport/auditexport/internal/revision"
	"github.com/auditexport/auditexport/internal/workbooks"
)

var _ pb.WorkbookServiceServer = (*WorkbookService)(nil)

// WorkbookService implements pb.WorkbookServiceServer.
type WorkbookService struct {
	pb.UnimplementedWorkbookServiceServer
	db  *ent.Client
	log *slog.Logger
	now func() time.Time
}

// NewWorkbookService builds the service.
func NewWorkbookService(db *ent.Client, log *slog.Logger) *WorkbookService {
	return &WorkbookService{db: db, log: log, now: time.Now}
}

func auditLogsConnection(p *auth.Principal) *pb.Connection {
	t := &pb.Table{Name: auditlog.TableName}
	for _, c := range auditlog.Columns {
		t.Columns = append(t.Columns, &pb.Column{Name: c.Name, Type: c.Type})
	}
	return &pb.Connection{Id: auditlog.ConnectionID, Name: auditlog.ConnectionName, Tables: []*pb.Table{t}, Access: p.CanAccessConnection(auditlog.ConnectionID)}
}

// ListConnections implements pb.WorkbookServiceServer.
func (s *WorkbookService) ListConnections(ctx context.Context, req *pb.ListConnectionsRequest) (*pb.ListConnectionsResponse, error) {
	var v violations
	pageSize(&v, req.GetPageSize())
	decodeToken(&v, "con", req.GetPageToken())
	if err := v.err(); err != nil {
		return nil, err
	}
	// One built-in connection today; paging fields are accepted for the future.
	return &pb.ListConnectionsResponse{Connections: []*pb.Connection{auditLogsConnection(auth.FromContext(ctx))}}, nil
}

// requireConnection checks the caller may use the connection (NOT_FOUND for unknown ids).
func requireConnection(ctx context.Context, field, id string) error {
	if id != auditlog.ConnectionID {
		if id == "" {
			return invalidField(field, "is required")
		}
		return notFound("connection", id)
	}
	if !auth.FromContext(ctx).CanAccessConnection(id) {
		return permissionDenied("no access to connection " + id + ": an ADMIN must grant it (AccountService.GrantConnectionAccess)")
	}
	return nil
}

// ExploreTable implements pb.WorkbookServiceServer.
func (s *WorkbookService) ExploreTable(ctx context.Context, req *pb.ExploreTableRequest) (*pb.ExploreTableResponse, error) {
	if err := requireConnection(ctx, "connection_id", req.GetConnectionId()); err != nil {
		return nil, err
	}
	if !strings.EqualFold(req.GetTable(), auditlog.TableName) {
		if req.GetTable() == "" {
			return nil, invalidField("table", "is required")
		}
		return nil, notFound("table", req.GetTable())
	}
	p := auth.FromContext(ctx)
	if !p.CanCreate() {
		return nil, permissionDenied("VIEWER accounts cannot explore tables")
	}
	wb, err := workbooks.Explore(ctx, s.db, p.UserID)
	if err != nil {
		return nil, commandError(ctx, s.log, "explore", err)
	}
	auditObject(ctx, "WORKBOOK", wb.ID)
	out, err := s.load(ctx, s.db, wb.ID)
	if err != nil {
		return nil, err
	}
	return &pb.ExploreTableResponse{Workbook: out}, nil
}

// visible loads a workbook the caller may see: saved ones, and the caller's
// own explorations. Anything else is NOT_FOUND.
func (s *WorkbookService) visible(ctx context.Context, db *ent.Client, field, id string) (*ent.Workbook, error) {
	var v violations
	idField(&v, field, id)
	if err := v.err(); err != nil {
		return nil, err
	}
	auditObject(ctx, "WORKBOOK", id)
	wb, err := db.Workbook.Query().Where(workbook.ID(id)).WithElements(func(q *ent.ElementQuery) {
		q.Order(ent.Asc(element.FieldPosition))
	}).Only(ctx)
	if ent.IsNotFound(err) || (err == nil && !wb.Saved && wb.OwnerID != auth.FromContext(ctx).UserID) {
		return nil, notFound("workbook", id)
	}
	if err != nil {
		return nil, internalError(ctx, s.log, "get workbook", err)
	}
	return wb, nil
}

func (s *WorkbookService) load(ctx context.Context, db *ent.Client, id string) (*pb.Workbook, error) {
	wb, err := s.visible(ctx, db, "id", id)
	if err != nil {
		return nil, err
	}
	return workbookPB(wb), nil
}

func workbookPB(wb *ent.Workbook) *pb.Workbook {
	out := &pb.Workbook{Id: wb.ID, Name: wb.Name, Folder: wb.Folder, Saved: wb.Saved, Owner: wb.OwnerID, CreateTime: ts(wb.CreateTime), UpdateTime: ts(wb.UpdateTime)}
	for _, e := range wb.Edges.Elements {
		out.Elements = append(out.Elements, elementPB(e))
	}
	return out
}

func elementPB(e *ent.Element) *pb.Element {
	out := &pb.Element{Id: e.ID, Name: e.Name, Source: &pb.TableSource{ConnectionId: e.ConnectionID, Table: e.TableName}, Columns: e.Spec.Columns}
	for _, f := range e.Spec.Filters {
		out.Filters = append(out.Filters, &pb.Filter{Column: f.Column, Operator: pb.FilterOperator(pb.FilterOperator_value["FILTER_OPERATOR_"+f.Op]), Values: f.Values})
	}
	if tr := e.Spec.TimeRange; tr != nil {
		out.RelativeTimeRange = &pb.RelativeTimeRange{Column: tr.Column, Last: durationpb.New(tr.Last)}
	}
	for _, k := range e.Spec.Sort {
		out.Sort = append(out.Sort, &pb.SortKey{Column: k.Column, Descending: k.Descending})
	}
	return out
}

// elementSpec validates an element from the API and converts it.
func elementSpec(v *violations, f string, e *pb.Element) auditlog.Spec {
	var spec auditlog.Spec
	spec.Columns = e.GetColumns()
	for i, fl := range e.GetFilters() {
		op := enumField(v, fmt.Sprintf("%sfilters[%d].operator", f, i), fl.GetOperator(), "FILTER_OPERATOR_", true)
		spec.Filters = append(spec.Filters, auditlog.Filter{Column: fl.GetColumn(), Op: op, Values: fl.GetValues()})
	}
	if tr := e.GetRelativeTimeRange(); tr != nil {
		if err := tr.GetLast().CheckValid(); err != nil || tr.GetLast() == nil {
			v.add(f+"relative_time_range.last", "must be a duration like 86400s")
		}
		spec.TimeRange = &auditlog.TimeRange{Column: tr.GetColumn(), Last: tr.GetLast().AsDuration()}
		if spec.TimeRange.Column == "" {
			spec.TimeRange.Column = "REQUEST_TIME"
		}
	}
	for _, k := range e.GetSort() {
		spec.Sort = append(spec.Sort, auditlog.SortKey{Column: k.GetColumn(), Descending: k.GetDescending()})
	}
	opProblem := map[string]bool{}
	for _, p := range v.list {
		opProblem[p.Field] = true
	}
	for _, viol := range auditlog.ValidateSpec(spec) {
		field := f + viol.Field
		if !opProblem[field] {
			v.add(field, "%s", viol.Msg)
		}
	}
	// Normalise column names to their canonical (upper) case.
	for i, c := range spec.Columns {
		if col, ok := auditlog.ColumnByName(c); ok {
			spec.Columns[i] = col.Name
		}
	}
	for i := range spec.Filters {
		if col, ok := auditlog.ColumnByName(spec.Filters[i].Column); ok {
			spec.Filters[i].Column = col.Name
		}
	}
	for i := range spec.Sort {
		if col, ok := auditlog.ColumnByName(spec.Sort[i].Column); ok {
			spec.Sort[i].Column = col.Name
		}
	}
	if spec.TimeRange != nil {
		if col, ok := auditlog.ColumnByName(spec.TimeRange.Column); ok {
			spec.TimeRange.Column = col.Name
		}
	}
	return spec
}

// SaveWorkbookAs implements pb.WorkbookServiceServer. Saving an exploration
// saves it in place (same id, same element ids); saving a saved workbook
// makes a copy with new ids.
func (s *WorkbookService) SaveWorkbookAs(ctx context.Context, req *pb.SaveWorkbookAsRequest) (*pb.SaveWorkbookAsResponse, error) {
	var v violations
	idField(&v, "id", req.GetId())
	text(&v, "name", req.GetName(), true, 256)
	text(&v, "folder", req.GetFolder(), false, 512)
	if err := v.err(); err != nil {
		return nil, err
	}
	p := auth.FromContext(ctx)
	src, err := s.visible(ctx, s.db, "id", req.GetId())
	if err != nil {
		return nil, err
	}
	if !p.CanCreate() {
		return nil, permissionDenied("VIEWER accounts cannot save workbooks")
	}
	outID, err := workbooks.SaveAs(ctx, s.db, src, p.UserID, req.GetName(), req.GetFolder())
	if err != nil {
		return nil, commandError(ctx, s.log, "save workbook", err)
	}
	out, err := s.load(ctx, s.db, outID)
	if err != nil {
		return nil, err
	}
	auditMeta(ctx, "source_workbook_id", src.ID)
	return &pb.SaveWorkbookAsResponse{Workbook: out}, nil
}

// GetWorkbook implements pb.WorkbookServiceServer.
func (s *WorkbookService) GetWorkbook(ctx context.Context, req *pb.GetWorkbookRequest) (*pb.GetWorkbookResponse, error) {
	out, err := s.load(ctx, s.db, req.GetId())
	if err != nil {
		return nil, err
	}
	return &pb.GetWorkbookResponse{Workbook: out}, nil
}

// ListWorkbooks implements pb.WorkbookServiceServer.
func (s *WorkbookService) ListWorkbooks(ctx context.Context, req *pb.ListWorkbooksRequest) (*pb.ListWorkbooksResponse, error) {
	var v violations
	size := pageSize(&v, req.GetPageSize())
	after := decodeToken(&v, "wb", req.GetPageToken())
	text(&v, "folder", req.GetFolder(), false, 512)
	if err := v.err(); err != nil {
		return nil, err
	}
	q := s.db.Workbook.Query().Where(workbook.Saved(true)).Order(ent.Asc(workbook.FieldID)).Limit(size + 1).
		WithElements(func(q *ent.ElementQuery) { q.Order(ent.Asc(element.FieldPosition)) })
	if after != "" {
		q = q.Where(workbook.IDGT(after))
	}
	if req.GetFolder() != "" {
		q = q.Where(workbook.Folder(req.GetFolder()))
	}
	rows, err := q.All(ctx)
	if err != nil {
		return nil, internalError(ctx, s.log, "list workbooks", err)
	}
	resp := &pb.ListWorkbooksResponse{}
	rows, resp.NextPageToken = page(rows, size, "wb", func(r *ent.Workbook) string { return r.ID })
	for _, r := range rows {
		resp.Workbooks = append(resp.Workbooks, workbookPB(r))
	}
	return resp, nil
}

var workbookUpdatable = []string{"name", "folder", "elements"}
var workbookOutputOnly = []string{"id", "saved", "owner", "create_time", "update_time"}

// UpdateWorkbook implements pb.WorkbookServiceServer.
func (s *WorkbookService) UpdateWorkbook(ctx context.Context, req *pb.UpdateWorkbookRequest) (*pb.UpdateWorkbookResponse, error) {
	in := req.GetWorkbook()
	if in == nil {
		return nil, invalidField("workbook", "is required")
	}
	cur, err := s.visible(ctx, s.db, "workbook.id", in.GetId())
	if err != nil {
		return nil, err
	}
	p := auth.FromContext(ctx)
	if !p.OwnsOrAdmin(cur.OwnerID) || !p.CanCreate() {
		return nil, permissionDenied("only the owner or an ADMIN may update this workbook")
	}
	if err := revision.Check("workbook", sentTime(in.GetUpdateTime()), cur.UpdateTime); err != nil {
		return nil, commandError(ctx, s.log, "update workbook", err)
	}
	var v violations
	paths := maskPaths(&v, req.GetUpdateMask(), workbookUpdatable, workbookOutputOnly)
	if paths["name"] {
		text(&v, "workbook.name", in.GetName(), cur.Saved, 256)
	}
	if paths["folder"] {
		text(&v, "workbook.folder", in.GetFolder(), false, 512)
	}
	existing := map[string]bool{}
	for _, e := range cur.Edges.Elements {
		existing[e.ID] = true
	}
	var elems []workbooks.Element
	if paths["elements"] {
		if len(in.GetElements()) > 50 {
			v.add("workbook.elements", "at most 50 elements")
		}
		seen := map[string]bool{}
		for i, e := range in.GetElements() {
			f := fmt.Sprintf("workbook.elements[%d].", i)
			if e.GetId() != "" && !existing[e.GetId()] {
				v.add(f+"id", "no element %q in this workbook (leave id empty to add an element)", e.GetId())
			}
			if seen[e.GetId()] && e.GetId() != "" {
				v.add(f+"id", "duplicate element id")
			}
			seen[e.GetId()] = true
			text(&v, f+"name", e.GetName(), false, 256)
			src := e.GetSource()
			if src.GetConnectionId() != auditlog.ConnectionID {
				v.add(f+"source.connection_id", "must be %s", auditlog.ConnectionID)
			} else if !strings.EqualFold(src.GetTable(), auditlog.TableName) {
				v.add(f+"source.table", "must be %s", auditlog.TableName)
			}
			name := e.GetName()
			if name == "" {
				name = auditlog.TableName
			}
			elems = append(elems, workbooks.Element{ID: e.GetId(), Name: name, Spec: elementSpec(&v, f, e)})
		}
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	var ch workbooks.Change
	if paths["name"] {
		ch.Name = proto.String(in.GetName())
	}
	if paths["folder"] {
		ch.Folder = proto.String(in.GetFolder())
	}
	if paths["elements"] {
		ch.Elements = &elems
	}
	if err := workbooks.Update(ctx, s.db, cur, ch); err != nil {
		return nil, commandError(ctx, s.log, "update workbook", err)
	}
	auditMeta(ctx, "update_mask", req.GetUpdateMask().GetPaths())
	out, err := s.load(ctx, s.db, cur.ID)
	if err != nil {
		return nil, err
	}
	return &pb.UpdateWorkbookResponse{Workbook: out}, nil
}

// DeleteWorkbook implements pb.WorkbookServiceServer.
func (s *WorkbookService) DeleteWorkbook(ctx context.Context, req *pb.DeleteWorkbookRequest) (*pb.DeleteWorkbookResponse, error) {
	cur, err := s.visible(ctx, s.db, "id", req.GetId())
	if err != nil {
		return nil, err
	}
	p := auth.FromContext(ctx)
	if !p.OwnsOrAdmin(cur.OwnerID) {
		return nil, permissionDenied("only the owner or an ADMIN may delete this workbook")
	}
	deleted, err := workbooks.Delete(ctx, s.db, cur.ID, req.GetForce(), workbooks.Caller{UserID: p.UserID, Admin: p.IsAdmin()})
	if err != nil {
		return nil, commandError(ctx, s.log, "delete workbook", err)
	}
	resp := &pb.DeleteWorkbookResponse{DeletedScheduleIds: deleted}
	auditMeta(ctx, "deleted_schedule_ids", resp.DeletedScheduleIds)
	return resp, nil
}

// QueryElement implements pb.WorkbookServiceServer.
func (s *WorkbookService) QueryElement(ctx context.Context, req *pb.QueryElementRequest) (*pb.QueryElementResponse, error) {
	var v violations
	size := pageSize(&v, req.GetPageSize())
	offTok := decodeToken(&v, "q:"+req.GetWorkbookId()+":"+req.GetElementId(), req.GetPageToken())
	idField(&v, "element_id", req.GetElementId())
	offset := 0
	if offTok != "" {
		n, err := strconv.Atoi(offTok)
		if err != nil || n < 0 {
			v.add("page_token", "invalid page token")
		}
		offset = n
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	wb, err := s.visible(ctx, s.db, "workbook_id", req.GetWorkbookId())
	if err != nil {
		return nil, err
	}
	var el *ent.Element
	for _, e := range wb.Edges.Elements {
		if e.ID == req.GetElementId() {
			el = e
		}
	}
	if el == nil {
		return nil, notFound("element", req.GetElementId())
	}
	if err := requireConnection(ctx, "element.source.connection_id", el.ConnectionID); err != nil {
		return nil, err
	}
	res, err := auditlog.Query(ctx, s.db, el.Spec, s.now(), offset, size)
	var invalid *auditlog.InvalidSpecError
	if errors.As(err, &invalid) {
		// Stored before a limit was added: the element must be fixed, not the server.
		return nil, failedPrecondition("ELEMENT_INVALID", "element "+el.ID+" is no longer valid ("+invalid.Error()+"): change it with UpdateWorkbook")
	}
	if err != nil {
		return nil, internalError(ctx, s.log, "query element", err)
	}
	resp := &pb.QueryElementResponse{TotalRows: res.Total}
	for _, c := range res.Columns {
		resp.Columns = append(resp.Columns, &pb.Column{Name: c.Name, Type: c.Type})
	}
	for _, row := range res.Rows {
		r := &pb.Row{}
		for _, val := range row {
			r.Values = append(r.Values, toValue(val))
		}
		resp.Rows = append(resp.Rows, r)
	}
	if int64(offset+len(res.Rows)) < res.Total && len(res.Rows) > 0 {
		resp.NextPageToken = encodeToken("q:"+req.GetWorkbookId()+":"+req.GetElementId(), strconv.Itoa(offset+len(res.Rows)))
	}
	auditObject(ctx, "ELEMENT", el.ID)
	auditMeta(ctx, "workbook_id", wb.ID)
	auditMeta(ctx, "rows", len(res.Rows))
	return resp, nil
}

func toValue(v any) *structpb.Value {
	switch x := v.(type) {
	case nil:
		return structpb.NewNullValue()
	case string:
		return structpb.NewStringValue(x)
	case time.Time:
		return structpb.NewStringValue(x.UTC().Format(time.RFC3339Nano))
	case int64:
		return structpb.NewNumberValue(float64(x))
	case json.RawMessage:
		var any interface{}
		if err := json.Unmarshal(x, &any); err == nil {
			if val, err := structpb.NewValue(any); err == nil {
				return val
			}
		}
		return structpb.NewStringValue(string(x))
	}
	return structpb.NewStringValue(fmt.Sprint(v))
}
