"""The enrollment part of the REST API: ``serializers``, ``views`` (viewsets), ``urls``;
``schema`` holds the refusals the OpenAPI schema states."""
