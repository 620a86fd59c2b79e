"""What the enrollment API's OpenAPI schema says besides the serializers: refusals."""

from drf_spectacular.utils import OpenApiResponse

from devices.api.serializers import ConflictSerializer

NO_SUCH_TYPE = "No such device type."
NO_SUCH_GATEWAY = "No such gateway in this organization."
NOT_RETRYABLE = "Only a failed enrollment through a gateway can be retried."
NO_PHOTO = "This enrollment has no photo."
NO_FILE = "Choose a file."

CONFLICT = {409: OpenApiResponse(ConflictSerializer, description="Over capacity: nothing stored.")}
