// Errors answered as RFC 9457 problem details, in the same shape as glucokit's Python API.

export const PROBLEM_JSON = "application/problem+json";

export class Problem extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    readonly detail: string,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(detail);
  }
}

export function problemResponse(problem: Problem, request: Request): Response {
  const { status, title, detail } = problem;
  return Response.json(
    { type: "about:blank", title, status, detail, instance: new URL(request.url).pathname },
    { status, headers: { ...problem.headers, "content-type": PROBLEM_JSON } },
  );
}
