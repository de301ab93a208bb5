"""The validation web app (issue 7): server-rendered twisted.web pages with Jinja2 templates."""

from .app import webapp_resource

__all__ = ["webapp_resource"]
