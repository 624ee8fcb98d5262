package apidoc

// Request examples of the main calls (README's walk-through, in REST JSON),
// by operation id. Values follow the schemas (lint: no-invalid-media-type-examples).
var requestExamples = map[string]obj{
	"IntegrationService_CreateStorageIntegration": {
		"s3": example("An S3 bucket with an access key", obj{
			"name": "s3_exports", "provider": "PROVIDER_S3",
			"destination": "s3://audit-exports/acme/", "region": "eu-central-1",
			"credentials": obj{"awsAccessKey": obj{
				"accessKeyId": "AKIAIOSFODNN7EXAMPLE", "secretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
			}},
		}),
		"local": example("A directory on the server (LOCAL, under its --local-root)", obj{
			"name": "local_exports", "provider": "PROVIDER_LOCAL",
			"destination": "file:///var/lib/auditexport/exports/org_0123456789abcdef/demo/",
		}),
	},
	"WorkbookService_SaveWorkbookAs": {
		"saveAs": example("Save an exploration as a named workbook", obj{"name": "Audit log export", "folder": "ops"}),
	},
	"ScheduleService_CreateSchedule": {
		"dailyCsv": example("Daily at 06:00 Berlin time, gzip-compressed CSV, one file per day", obj{
			"elementId": "el_0123456789abcdef", "name": "daily failures",
			"destination": obj{"cloudStorage": obj{
				"storageIntegrationName": "s3_exports",
				"uri":                    "s3://audit-exports/acme/{yyyy}/{mm}/failures-{date}.csv.gz",
			}},
			"format": "FORMAT_CSV", "compression": "COMPRESSION_GZIP",
			"cron": "0 6 * * *", "timeZone": "Europe/Berlin",
		}),
	},
	"ScheduleService_UpdateSchedule": {
		"cron": example("Change the cron expression (with ?updateMask=cron)", obj{"cron": "30 5 * * 1-5"}),
	},
	"ScheduleService_SendNow": {
		"sendNow": example("Run now (the body is empty)", obj{}),
	},
}

func withExamples(operationID string, media obj) obj {
	if ex, ok := requestExamples[operationID]; ok {
		media["examples"] = ex
	}
	return media
}
