"""The devices part of the REST API: ``serializers``, ``views`` (viewsets), ``urls``;
``schema`` holds the answers and limits the OpenAPI schema states."""
