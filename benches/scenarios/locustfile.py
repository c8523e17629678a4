# Locust's equivalent of trivial.js: FastHttpUser (geventhttpclient), no wait between tasks.
from locust import FastHttpUser, constant, task


class Trivial(FastHttpUser):
    wait_time = constant(0)

    @task
    def home(self):
        self.client.get("/")
