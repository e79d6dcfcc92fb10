// Entry point for `node --import @concord/runtime/register dist/main.js`: starts OpenTelemetry
// before any application module is evaluated, so every gRPC server and client the process builds is
// traced. The service name comes from CONCORD_SERVICE_NAME (OTEL_SERVICE_NAME overrides both).
// Application code gets the same handle, to flush spans on shutdown, by calling startTelemetry again.
import { startTelemetry } from './telemetry.js';

startTelemetry(process.env['CONCORD_SERVICE_NAME'] ?? 'concord');
