// The front door's Open Inference Protocol v2 (REST and gRPC), run by nginx's
// njs module (serving/front/nginx.conf.template loads it).
//
// This file only routes: it maps a v2 URL or a gRPC method to a call, checks
// the method and the bearer token, and hands the call to a model host through
// nginx's own /_fizbuz/ location (retries on another host, adaptive routing,
// timeouts: the same as the card's path). The protocol itself (parsing,
// validation, metadata, replies) is the handler's (fizbuz_v2.py). The handler
// answers in an envelope, one line then the payload:
//   FZ1 <status> <content type> <v2 header length or -> <payload length> <grpc-status> <grpc-message or ->
// because MMS 1.0.8 cannot safely send response headers; this file turns the
// line into the status, headers and trailers.

const GRPC_PREFIX = '/inference.GRPCInferenceService/';
// gRPC status codes (grpc/doc/statuscodes.md).
const GRPC = {OK: 0, INVALID_ARGUMENT: 3, NOT_FOUND: 5, RESOURCE_EXHAUSTED: 8, UNIMPLEMENTED: 12,
              INTERNAL: 13, UNAVAILABLE: 14, UNAUTHENTICATED: 16};
// The two answers the door gives itself, as framed messages (a 0 byte, a
// 4-byte big-endian length, the message): ServerLiveResponse{live: true}, and
// the empty message, which is {ready: false} for the readiness calls.
const LIVE = Buffer.from([0, 0, 0, 0, 2, 0x08, 0x01]);
const NOT_READY = Buffer.from([0, 0, 0, 0, 0]);
// Calls anyone may make (probes); every other call needs a valid token.
const OPEN_CALLS = {ServerLive: 1, ServerReady: 1, ModelReady: 1};
const GRPC_CALLS = {ServerLive: 1, ServerReady: 1, ModelReady: 1, ServerMetadata: 1, ModelMetadata: 1,
                    ModelConfig: 1, ModelInfer: 1};
const REST_MODEL = /^\/v2\/models\/([^/]+)(?:\/versions\/([^/]+))?(\/ready|\/config|\/infer)?$/;
const REST_CALLS = {'': 'ModelMetadata', '/ready': 'ModelReady', '/config': 'ModelConfig', '/infer': 'ModelInfer'};
const TOKEN_ERROR = 'a valid bearer token is required (Authorization: Bearer TOKEN)';
// Door hardening (issue 22): the bodies v2 REST takes: JSON, the binary
// extension's octet-stream, or no type at all (tritonclient sends none).
const V2_BODY_TYPE = /^application\/(json|octet-stream)\s*(;.*)?$/i;

function json(r, status, document, extraHeaders) {
    r.headersOut['Content-Type'] = 'application/json';
    for (const name in extraHeaders || {}) {
        r.headersOut[name] = extraHeaders[name];
    }
    r.return(status, JSON.stringify(document) + '\n');
}

function restError(r, status, message, extraHeaders) {
    json(r, status, {error: message, code: status}, extraHeaders);
}

// The handler's envelope, or null when the reply is not one (an error the
// door's own locations wrote: no host, a timeout).
function envelope(reply) {
    const body = reply.responseBuffer;
    if (!body || body.length < 4 || body.slice(0, 4).toString() !== 'FZ1 ') {
        return null;
    }
    const end = body.indexOf(10);
    const f = body.slice(0, end).toString().split(' ');
    const length = parseInt(f[4], 10);
    return {status: parseInt(f[1], 10), type: f[2], headerLength: f[3] === '-' ? '' : f[3],
            payload: body.slice(end + 1, end + 1 + length), grpcStatus: f[5], grpcMessage: f[6] === '-' ? '' : f[6]};
}

// One call to a model host: the handler's envelope, or {failed: reply}. The
// subrequest carries the client's own body, held by nginx: a body handed over
// from JavaScript is not kept for a second try (nginx's retry on another host
// re-sends freed memory: "writev() failed (14: Bad address)").
async function call(r, protocol, name, model, version) {
    const args = 'protocol=' + protocol + '&call=' + name + '&model=' + encodeURIComponent(model || '')
        + '&version=' + encodeURIComponent(version || '');
    const reply = await r.subrequest('/_fizbuz/call', {args: args, method: 'POST'});
    // The try's upstream, status and time, for the access and metrics logs.
    r.variables.fizbuz_sub_upstream = reply.variables.upstream_addr || '';
    r.variables.fizbuz_sub_ustatus = reply.variables.upstream_status || '';
    r.variables.fizbuz_sub_urt = reply.variables.upstream_response_time || '';
    r.variables.fizbuz_sub_uht = reply.variables.upstream_header_time || '';
    const answer = envelope(reply);
    return answer || {failed: reply};
}

function hostFailure(reply) {
    // The door's own JSON error (no host, 413 from a host), or a generic one.
    let message = 'no model host could answer; try again';
    try {
        message = JSON.parse(reply.responseText).error || message;
    } catch (e) {
        // not JSON: keep the generic message
    }
    return {status: reply.status >= 400 ? reply.status : 502, message: message};
}

// ------------------------------------------------------------------ REST

async function v2Call(r) {
    const uri = r.uri.length > 4 && r.uri.endsWith('/') ? r.uri.slice(0, -1) : r.uri;
    let name, model = '', version = '';
    if (uri === '/v2') {
        name = 'ServerMetadata';
    } else if (uri === '/v2/health/live') {
        name = 'ServerLive';
    } else if (uri === '/v2/health/ready') {
        name = 'ServerReady';
    } else {
        const m = uri.match(REST_MODEL);
        if (!m) {
            return restError(r, 404, 'not found: the v2 paths are /v2, /v2/health/{live,ready} and '
                             + '/v2/models/{model}[/versions/{version}][/ready|/config|/infer]');
        }
        model = m[1];
        version = m[2] || '';
        name = REST_CALLS[m[3] || ''];
    }
    const method = name === 'ModelInfer' ? 'POST' : 'GET';
    if (r.method !== method && !(method === 'GET' && r.method === 'HEAD')) {
        return restError(r, 405, 'use ' + method + ' for ' + uri, {Allow: method === 'GET' ? 'GET, HEAD' : 'POST'});
    }
    if (!OPEN_CALLS[name] && !r.variables.fizbuz_client) {
        return restError(r, 401, TOKEN_ERROR, {'WWW-Authenticate': 'Bearer realm="fizbuz"'});
    }
    if (name === 'ServerLive') {
        return json(r, 200, {live: true});
    }
    const type = r.headersIn['Content-Type'];
    if (name === 'ModelInfer' && type && !V2_BODY_TYPE.test(type)) {
        return restError(r, 415, 'a v2 inference body is application/json or application/octet-stream, not ' + type);
    }
    const answer = await call(r, 'v2', name, model, version);
    if (answer.failed) {
        const failure = hostFailure(answer.failed);
        if (name === 'ServerReady' || name === 'ModelReady') {
            return json(r, 503, {ready: false, error: 'no model host answered a prediction', code: 503});
        }
        return restError(r, failure.status, failure.message);
    }
    r.headersOut['Content-Type'] = answer.type;
    if (answer.headerLength) {
        r.headersOut['Inference-Header-Content-Length'] = answer.headerLength;
    }
    r.return(answer.status, answer.payload);
}

// ------------------------------------------------------------------ gRPC

function grpcStatus(r, code, message) {
    r.headersOut['Content-Type'] = 'application/grpc';
    r.variables.fizbuz_grpc_status = String(code);
    r.variables.fizbuz_grpc_message = message ? encodeURIComponent(message) : '';
    r.return(200, '');
}

function grpcReply(r, payload) {
    r.headersOut['Content-Type'] = 'application/grpc';
    r.variables.fizbuz_grpc_status = '0';
    r.return(200, payload);
}

// The gRPC status for an HTTP status the door or a host answered with.
function grpcCodeFor(status) {
    if (status === 401) return GRPC.UNAUTHENTICATED;
    if (status === 413 || status === 429) return GRPC.RESOURCE_EXHAUSTED;
    if (status === 400) return GRPC.INVALID_ARGUMENT;
    if (status === 404) return GRPC.NOT_FOUND;
    if (status >= 500) return GRPC.UNAVAILABLE;
    return GRPC.INTERNAL;
}

async function grpcCall(r) {
    const name = r.uri.slice(GRPC_PREFIX.length);
    if (!GRPC_CALLS[name]) {
        return grpcStatus(r, GRPC.UNIMPLEMENTED, 'inference.GRPCInferenceService/' + name + ' is not served here');
    }
    if (!OPEN_CALLS[name] && !r.variables.fizbuz_client) {
        return grpcStatus(r, GRPC.UNAUTHENTICATED, TOKEN_ERROR + ' in the authorization metadata');
    }
    if (name === 'ServerLive') {
        return grpcReply(r, LIVE);
    }
    const answer = await call(r, 'grpc', name, '', '');
    if (answer.failed) {
        if (name === 'ServerReady' || name === 'ModelReady') {
            return grpcReply(r, NOT_READY);
        }
        const failure = hostFailure(answer.failed);
        return grpcStatus(r, grpcCodeFor(failure.status), failure.message);
    }
    if (answer.grpcStatus !== '0') {
        r.headersOut['Content-Type'] = 'application/grpc';
        r.variables.fizbuz_grpc_status = answer.grpcStatus;
        r.variables.fizbuz_grpc_message = answer.grpcMessage;  // already percent-encoded
        return r.return(200, '');
    }
    grpcReply(r, answer.payload);
}

// A request nginx refused before the njs handler ran (rate limit, body too
// large, no token for a gRPC path), as a gRPC status: error_page sends it here
// with the HTTP status in $status.
function grpcRefusal(r) {
    const status = parseInt(r.variables.fizbuz_refusal, 10);
    const messages = {413: 'request message too large', 429: 'rate limit for this token exceeded'};
    grpcStatus(r, grpcCodeFor(status), messages[status] || 'refused by the front door (HTTP ' + status + ')');
}

// A client that left before its answer makes r.return throw: nothing to answer then.
function v2(r) {
    return v2Call(r).catch((e) => r.log('v2 request ended early: ' + e.message));
}

function grpc(r) {
    return grpcCall(r).catch((e) => r.log('gRPC request ended early: ' + e.message));
}

export default {v2, grpc, grpcRefusal};
