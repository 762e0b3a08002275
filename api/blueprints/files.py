"""/api/upload and /api/files: uploads processed by workers, listing, download, delete."""
from __future__ import annotations

from flask import Response, request, send_file, stream_with_context
from flask_openapi3 import APIBlueprint, Tag

from api.errors import APIError
from api.schemas.common import ERRORS, MessageResponse
from api.schemas.files import FileOut, FilePage, FilePath, FileQuery, UploadForm, UploadResponse
from api.security import authenticate, url_binding
from api.services import files
from shared.settings import get_settings
from shared.signing import file_download_url, file_resource
from shared.storage import get_storage

bp = APIBlueprint("files", __name__, url_prefix="/api", abp_tags=[Tag(name="files")],
                  abp_security=[{"bearer": []}], abp_responses={**ERRORS, 413: ERRORS[400], 415: ERRORS[400]})


@bp.before_request
def _upload_limit():
    if request.endpoint == "files.upload_file":
        request.max_content_length = get_settings().UPLOAD_MAX_BYTES + 64 * 1024  # plus multipart overhead
        # The multipart parser reads 64 KB at a time: other requests run between its reads.
        request.environ["wsgi.input"] = files.Yielding(request.environ["wsgi.input"])


@bp.post("/upload/file", responses={202: UploadResponse, 200: UploadResponse})
def upload_file(form: UploadForm):
    """Upload course material (multipart field `file`); a worker extracts and indexes it.

    The type is sniffed from the content. `scope=public` is for tutors and admins. The same
    content uploaded again by the same user answers 200 with the file it already has.
    """
    user = authenticate()
    body, status = files.upload(user, form.file, form.scope)
    return body, status


@bp.get("/files", responses={200: FilePage})
def list_files(query: FileQuery):
    """The caller's files and the public ones, newest first."""
    user = authenticate()
    return files.list_files(user, query.limit, query.offset, query.status, query.scope)


@bp.get("/files/<id:file_id>", responses={200: FileOut})
def get_file(path: FilePath):
    """One file's record, with a signed download_url."""
    user = authenticate()
    f = files.get_visible(user, path.file_id)
    return {**files.file_out(f), "download_url": file_download_url(url_binding(), f.id)}


@bp.get("/files/<id:file_id>/download", security=[{"bearer": []}, {"signed_url": []}],
        responses={200: {"content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                         "description": "the file's bytes, as its stored content type"},
                   206: {"description": "a byte range"}})
def download(path: FilePath):
    """The file's bytes, streamed, with Range support (Bearer header or the signed download_url)."""
    user = authenticate(file_resource(path.file_id))
    f = files.get_visible(user, path.file_id)
    storage = get_storage()
    if not storage.exists(f.storage_key):
        raise APIError(404, "not_found", "the file's content is gone")
    local = storage.local_path(f.storage_key)
    if local is not None:
        resp = send_file(local, mimetype=f.content_type, as_attachment=True, download_name=f.name,
                         conditional=True, etag=f.sha256, max_age=0)
        resp.headers["Content-Type"] = f.content_type  # as stored: Werkzeug would add a second charset
    else:  # a remote store: stream it through
        def body():
            with storage.open(f.storage_key) as src:
                while chunk := src.read(256 * 1024):
                    yield chunk
        resp = Response(stream_with_context(body()), mimetype=f.content_type)
        resp.headers["Content-Length"] = str(f.size)
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Content-Security-Policy"] = "sandbox"
    return resp


@bp.delete("/files/<id:file_id>", responses={200: MessageResponse})
def delete_file(path: FilePath):
    """Delete a file: its blob, its chunks and its vectors."""
    user = authenticate()
    files.delete_file(user, path.file_id)
    return {"message": "file deleted"}
