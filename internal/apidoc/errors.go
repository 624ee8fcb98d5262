package apidoc

// The error model of the served document: google.rpc.Status with its
// detail types, and one reusable response per HTTP status that grpc-gateway
// maps the gRPC codes to (runtime.HTTPStatusFromCode). docs/api.md "Error
// reasons" lists the reasons.

const (
	typeErrorInfo  = "type.googleapis.com/google.rpc.ErrorInfo"
	typeBadRequest = "type.googleapis.com/google.rpc.BadRequest"
	typeRetryInfo  = "type.googleapis.com/google.rpc.RetryInfo"
)

func ref(name string) obj { return obj{"$ref": "#/components/schemas/" + name} }

func errorSchemas() obj {
	at := func(t string) obj {
		return obj{"type": "string", "const": t, "description": "The detail's type."}
	}
	return obj{
		"rpcStatus": obj{
			"type": "object",
			"description": "google.rpc.Status: the error of every failed call (and the `error` of a failed " +
				"stream). `code` is the gRPC code number, `message` a developer-facing English text, " +
				"`details` typed details: always an ErrorInfo with the machine-readable reason, a " +
				"BadRequest for invalid fields, a RetryInfo for rate limits.",
			"properties": obj{
				"code":    obj{"type": "integer", "format": "int32", "description": "gRPC status code (3 INVALID_ARGUMENT, 5 NOT_FOUND, 9 FAILED_PRECONDITION, ...)."},
				"message": obj{"type": "string"},
				"details": obj{"type": "array", "items": obj{"anyOf": []any{
					ref("googleRpcErrorInfo"), ref("googleRpcBadRequest"), ref("googleRpcRetryInfo"), ref("protobufAny"),
				}}},
			},
		},
		"googleRpcErrorInfo": obj{
			"type":        "object",
			"description": "google.rpc.ErrorInfo: the reason of the error (docs/api.md \"Error reasons\" lists them); clients may switch on it.",
			"required":    []any{"@type", "reason", "domain"},
			"properties": obj{
				"@type":    at(typeErrorInfo),
				"reason":   obj{"type": "string", "examples": []any{"NOT_FOUND", "WORKBOOK_NOT_SAVED"}},
				"domain":   obj{"type": "string", "const": "auditexport"},
				"metadata": obj{"type": "object", "additionalProperties": obj{"type": "string"}},
			},
		},
		"googleRpcBadRequest": obj{
			"type":        "object",
			"description": "google.rpc.BadRequest: the invalid fields. Over REST, field paths use the JSON (lowerCamelCase) names.",
			"required":    []any{"@type", "fieldViolations"},
			"properties": obj{
				"@type": at(typeBadRequest),
				"fieldViolations": obj{"type": "array", "items": obj{
					"type":     "object",
					"required": []any{"field", "description"},
					"properties": obj{
						"field":       obj{"type": "string", "examples": []any{"schedule.timeZone"}},
						"description": obj{"type": "string"},
					},
				}},
			},
		},
		"googleRpcRetryInfo": obj{
			"type":        "object",
			"description": "google.rpc.RetryInfo: when to retry a rate-limited call.",
			"required":    []any{"@type", "retryDelay"},
			"properties": obj{
				"@type":      at(typeRetryInfo),
				"retryDelay": obj{"type": "string", "description": "A protobuf Duration, e.g. \"12.500s\".", "examples": []any{"12.500s"}},
			},
		},
	}
}

func status(code int, message, reason string, extra ...obj) obj {
	details := []any{}
	for _, e := range extra {
		details = append(details, e)
	}
	details = append(details, obj{"@type": typeErrorInfo, "reason": reason, "domain": "auditexport"})
	return obj{"code": code, "message": message, "details": details}
}

func example(summary string, value obj) obj { return obj{"summary": summary, "value": value} }

func errorResponse(description string, examples obj) obj {
	return obj{
		"description": description,
		"content": obj{"application/json": obj{
			"schema":   ref("rpcStatus"),
			"examples": examples,
		}},
	}
}

type errResp struct{ code, name string }

// errorsFor lists the error responses of an operation: every operation
// may be refused for its input, key, role or a missing resource, be rate
// limited or fail inside; writes may also conflict.
func errorsFor(method string) []errResp {
	es := []errResp{
		{"400", "BadRequest"}, {"401", "Unauthenticated"}, {"403", "PermissionDenied"},
		{"404", "NotFound"}, {"429", "TooManyRequests"}, {"500", "InternalError"},
		{"503", "Unavailable"}, {"default", "OtherError"},
	}
	if method == "post" || method == "patch" || method == "delete" {
		es = append(es, errResp{"409", "Conflict"})
	}
	return es
}

func errorResponses() obj {
	return obj{
		"BadRequest": errorResponse(
			"INVALID_ARGUMENT (a `google.rpc.BadRequest` names the invalid fields), MALFORMED_REQUEST "+
				"(the body is not valid JSON for the request), OUT_OF_RANGE, or FAILED_PRECONDITION: grpc-gateway "+
				"answers FAILED_PRECONDITION with 400, not 412; its ErrorInfo reason says which precondition "+
				"failed (WORKBOOK_NOT_SAVED, INTEGRATION_DELETED, RUN_IN_PROGRESS, ...).",
			obj{
				"invalidArgument": example("A field violation (INVALID_ARGUMENT)", status(3,
					`schedule.timeZone: unknown time zone "Europe/Berln"`, "INVALID_ARGUMENT",
					obj{"@type": typeBadRequest, "fieldViolations": []any{obj{
						"field": "schedule.timeZone", "description": `unknown time zone "Europe/Berln"`,
					}}})),
				"failedPrecondition": example("A failed precondition (FAILED_PRECONDITION)", status(9,
					"only saved workbooks can be scheduled", "WORKBOOK_NOT_SAVED")),
			}),
		"Unauthenticated": errorResponse("UNAUTHENTICATED: no API key, or an unknown, revoked or expired one.",
			obj{"unauthenticated": example("No or a bad API key", status(16, "invalid or missing API key", "UNAUTHENTICATED"))}),
		"PermissionDenied": errorResponse("PERMISSION_DENIED: the key's user may not do this (role, connection "+
			"grant or ownership); reasons PERMISSION_DENIED, SCHEDULES_OWNED_BY_OTHERS, OWNER_NOT_AUTHORIZED.",
			obj{"permissionDenied": example("A VIEWER creating a schedule", status(7, "VIEWER may not create schedules", "PERMISSION_DENIED"))}),
		"NotFound": errorResponse("NOT_FOUND: the resource does not exist or is not visible to the caller's organization.",
			obj{"notFound": example("An unknown id", status(5, `schedule "sch_0123456789abcdef" not found`, "NOT_FOUND"))}),
		"Conflict": errorResponse("ALREADY_EXISTS (a name is taken) or ABORTED (a concurrent change; retry "+
			"after reading the resource again).",
			obj{"alreadyExists": example("A taken name", status(6, `storage integration "s3_exports" already exists`, "ALREADY_EXISTS"))}),
		"TooManyRequests": errorResponse("RESOURCE_EXHAUSTED: a limit was reached (MANUAL_RUN_LIMIT_ORG, "+
			"MANUAL_RUN_LIMIT_SERVER) or too many failed authentications came from this client "+
			"(AUTH_FAILURE_RATE_LIMITED, with a `google.rpc.RetryInfo`).",
			obj{"rateLimited": example("Too many failed authentications", status(8,
				"too many failed authentications; retry later", "AUTH_FAILURE_RATE_LIMITED",
				obj{"@type": typeRetryInfo, "retryDelay": "12.500s"}))}),
		"InternalError": errorResponse("INTERNAL (or UNKNOWN, DATA_LOSS): a server fault; the message carries the request id to look up in the server's log.",
			obj{"internal": example("A server fault", status(13, "internal error (request id req_0123456789abcdef)", "INTERNAL"))}),
		"Unavailable": errorResponse("UNAVAILABLE: the server is shutting down or cannot reach a dependency; retry with backoff.",
			obj{"unavailable": example("Shutting down", status(14, "server is shutting down", "UNAVAILABLE"))}),
		"OtherError": errorResponse("Any other error, as a google.rpc.Status: 408 REQUEST_BODY_TIMEOUT (the "+
			"body did not arrive in time), 499 CANCELED, 501 UNIMPLEMENTED, 504 DEADLINE_EXCEEDED.",
			obj{"deadlineExceeded": example("A deadline", status(4, "deadline exceeded", "DEADLINE_EXCEEDED"))}),
	}
}
